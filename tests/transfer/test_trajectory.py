"""Trajectory folders: round trips, schedules, linear trajectories, and the errors users see."""

import json
import math

import pytest
import torch
from torch import nn

from transfer.trajectory import (
    LinearTrajectory,
    Trajectory,
    TrajectoryError,
    TrajectoryWriter,
    atomic_write_json,
    schedule_lambdas,
)


def _tiny_state(seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    m = nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4), nn.Linear(4, 3))
    m.train()
    m(torch.randn(8, 5))  # moves BN running stats and num_batches_tracked
    return m.state_dict()


def _record(path, n=3, model="zoo:test"):
    w = TrajectoryWriter(path, model=model, data="synthetic", seed=1, config={"lr": 0.1})
    states = [_tiny_state(i) for i in range(n)]
    for i, s in enumerate(states):
        w.save(s, step=10 * i, epoch=float(i), metrics={"val_acc": 0.5 + i / 10})
    w.finish()
    return states


def test_reload_is_bit_identical_and_lazy_views_match_the_manifest(tmp_path):
    states = _record(tmp_path / "run")
    traj = Trajectory(tmp_path / "run")
    assert len(traj) == 3 and traj.steps == [0, 10, 20] and traj.model == "zoo:test"
    assert traj.complete and traj.checkpoints[0]["name"] == "init"
    assert traj.metrics("val_acc") == [0.5, 0.6, 0.7]
    for want, got in zip(states, traj, strict=True):
        assert want.keys() == got.keys()
        for k in want:
            assert want[k].dtype == got[k].dtype and torch.equal(want[k], got[k])
    assert torch.equal(traj.final()["0.weight"], states[-1]["0.weight"])
    assert torch.equal(traj.load_step(10)["2.bias"], states[1]["2.bias"])
    assert torch.equal(traj.init()["1.num_batches_tracked"], states[0]["1.num_batches_tracked"])
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["format"] == "permgraph-trajectory" and manifest["version"] == 1
    assert manifest["checkpoints"][1]["file"] == "ckpt_0000010.safetensors"
    assert manifest["checkpoints"][0]["shapes"]["0.weight"] == [4, 5]
    with pytest.raises(KeyError, match="recorded steps"):
        traj.load_step(5)


def test_tied_noncontiguous_and_cuda_free_tensors_save(tmp_path):
    w = torch.randn(6, 4)
    state = {"tok.weight": w, "head.weight": w, "t": w.t(), "half": w[:, :2].to(torch.bfloat16)}
    wr = TrajectoryWriter(tmp_path / "r", model="m")
    wr.save(state, step=0, epoch=0)
    got = Trajectory(tmp_path / "r").load(0)
    for k, v in state.items():
        assert torch.equal(got[k], v)


def test_reopen_continues_and_other_model_is_refused(tmp_path):
    _record(tmp_path / "run", n=2)
    w = TrajectoryWriter(tmp_path / "run", model="zoo:test")
    assert w.steps == [0, 10]
    w.save(_tiny_state(9), step=30, epoch=3.0)
    traj = Trajectory(tmp_path / "run")
    assert traj.steps == [0, 10, 30] and not traj.complete
    with pytest.raises(ValueError, match="already holds a trajectory of model 'zoo:test'"):
        TrajectoryWriter(tmp_path / "run", model="zoo:other")


def test_truncated_checkpoint_is_reported_as_corrupt(tmp_path):
    _record(tmp_path / "run", n=2)
    f = tmp_path / "run" / "ckpt_0000010.safetensors"
    f.write_bytes(f.read_bytes()[:-7])
    traj = Trajectory(tmp_path / "run")
    traj.load(0)
    with pytest.raises(TrajectoryError, match="corrupt checkpoint .*re-run the command that recorded this trajectory"):
        traj.load(1)
    with pytest.raises(TrajectoryError, match="corrupt checkpoint"):
        Trajectory(tmp_path / "run", verify=False).load(1)


def test_shape_mismatch_against_manifest(tmp_path):
    _record(tmp_path / "run", n=1)
    mpath = tmp_path / "run" / "manifest.json"
    m = json.loads(mpath.read_text())
    m["checkpoints"][0]["shapes"]["0.weight"] = [5, 4]
    atomic_write_json(mpath, m)
    with pytest.raises(
        TrajectoryError, match="'0.weight' has shape \\[4, 5\\], the manifest says \\[5, 4\\]"
    ):
        Trajectory(tmp_path / "run").load(0)


def test_missing_folder_manifest_and_file_errors_name_the_fix(tmp_path):
    with pytest.raises(TrajectoryError, match="does not exist"):
        Trajectory(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(TrajectoryError, match="manifest.json is missing"):
        Trajectory(tmp_path / "empty")
    (tmp_path / "empty" / "manifest.json").write_text("{not json")
    with pytest.raises(TrajectoryError, match="corrupt manifest"):
        Trajectory(tmp_path / "empty")
    _record(tmp_path / "run", n=2)
    (tmp_path / "run" / "ckpt_0000010.safetensors").unlink()
    with pytest.raises(TrajectoryError, match="names checkpoint ckpt_0000010.safetensors .* missing"):
        Trajectory(tmp_path / "run")


def test_schedules():
    assert schedule_lambdas(4) == [0.0, 0.25, 0.5, 0.75, 1.0]
    T = 5
    lam = schedule_lambdas(T, "cosine")
    assert len(lam) == T + 1 and lam[0] == 0.0 and lam[-1] == 1.0
    assert lam[1] == pytest.approx(2 / (T + 1))  # Σ w_j = T + 1
    steps = [b - a for a, b in zip(lam, lam[1:], strict=False)]
    assert all(s1 > s2 for s1, s2 in zip(steps, steps[1:], strict=False))
    w = [1 + math.cos(math.pi * j / T) for j in range(T)]
    assert lam[3] == pytest.approx(sum(w[:3]) / sum(w))
    with pytest.raises(ValueError, match="valid schedules: uniform, cosine"):
        schedule_lambdas(3, "linear")
    with pytest.raises(ValueError, match="T must be"):
        schedule_lambdas(0)


def test_linear_trajectory_interpolates_floats_and_keeps_int_buffers_from_the_end():
    a, b = _tiny_state(0), _tiny_state(1)
    b["1.num_batches_tracked"] = torch.tensor(7)
    lt = LinearTrajectory(a, b, T=4)
    assert len(lt) == 5 and lt.lambdas == schedule_lambdas(4)
    mid = lt.at(2)
    assert torch.allclose(mid["0.weight"], (a["0.weight"] + b["0.weight"]) / 2)
    assert mid["1.num_batches_tracked"].item() == 7
    ends = list(lt)
    assert all(torch.equal(ends[0][k], a[k]) for k in a if a[k].is_floating_point())
    assert all(torch.equal(ends[-1][k], b[k]) for k in b)
    with pytest.raises(IndexError):
        lt.at(5)
    with pytest.raises(ValueError, match="different tensors"):
        LinearTrajectory(a, {"x": torch.zeros(1)}, T=2)

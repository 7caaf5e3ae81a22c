"""GMT / FGMT / Naive / Oracle / Random through the engine: planted permutations, identities between
methods, bad inputs, resume."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import permgraph
from permgraph.apply import apply, random_permutation
from transfer.engine import TransferEngine, TransferError
from transfer.options import TransferOptions
from transfer.trajectory import LinearTrajectory, Trajectory, TrajectoryWriter
from zoo.models import build

MLP = "zoo:mlp2?width=12&in_features=6&num_classes=3"




@dataclass
class Tiny:
    name: str
    train: tuple[torch.Tensor, torch.Tensor]
    val: tuple[torch.Tensor, torch.Tensor]


def tiny_data(shape: tuple[int, ...], classes: int, n: int = 32, seed: int = 0) -> Tiny:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n + 16, *shape, generator=g)
    y = torch.randint(0, classes, (n + 16,), generator=g)
    return Tiny("tiny", (x[:n], y[:n]), (x[n:], y[n:]))


def record(path: Path, model_id: str, seed: int, data: Tiny, steps: int = 3, lr: float = 0.05) -> Trajectory:
    """A few full-batch SGD steps, every step saved: a real (if short) trajectory."""
    torch.manual_seed(seed)
    model = build(model_id)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    w = TrajectoryWriter(path, model=model_id, data=data.name, seed=seed)
    w.save(model.state_dict(), step=0, epoch=0.0)
    for s in range(1, steps + 1):
        opt.zero_grad()
        F.cross_entropy(model(data.train[0]), data.train[1]).backward()
        opt.step()
        w.save(model.state_dict(), step=s, epoch=float(s))
    w.finish()
    return Trajectory(path)


def run(method: str, src, init, data, out: Path | None = None, *, model=None, spec=None, loss_fn=None,
        callback=None, target=None, model_id: str = MLP, **options) -> dict:
    """One transfer through the engine with tiny defaults; an int ``init`` is a seeded fresh init."""
    options = {"grad_batches": 2, "batch_size": 16, "bn_batches": 2, "T": 2, "eval_batch_size": 64,
               "progress": False, **options}  # fmt: skip
    if isinstance(init, int):
        torch.manual_seed(init)
        init = build(model_id).state_dict()
    engine = TransferEngine(model or build(model_id), data, TransferOptions(**options), loss_fn=loss_fn, spec=spec)
    return engine.run(method, src, init, target=target, out=out, callback=callback)



class Stop(Exception):
    """Raised from a step callback: an interruption at a known step."""


def run_interrupted(method: str, src, init, data, out: Path, at: int = 2, **kw) -> None:
    """``run`` stopped by an exception right after step ``at`` (as a crash or Ctrl-C would stop it)."""

    def stop(t, record):
        if t == at:
            raise Stop

    with pytest.raises(Stop):
        run(method, src, init, data, out, callback=stop, **kw)

PLANTED = [
    (MLP, (6,), 3, True),
    ("zoo:conv8?width=0.125&num_classes=3", (3, 8, 8), 3, False),
    ("zoo:resnet20?width=1&num_classes=3", (3, 8, 8), 3, False),
    (
        "zoo:vit_tiny?image_size=8&patch_size=4&dim=16&heads=2&mlp_dim=24&depth=1&num_classes=3",
        (1, 8, 8),
        3,
        True,
    ),
]


@pytest.mark.parametrize(
    "model_id,shape,classes,linear", PLANTED, ids=["mlp2", "conv8", "resnet20", "vit_tiny"]
)
def test_gmt_and_fgmt_recover_a_planted_permutation(tmp_path, model_id, shape, classes, linear):
    """target init = pi* . source init  =>  transferred trajectory = pi* . source trajectory."""
    data = tiny_data(shape, classes)
    src = record(tmp_path / "src", model_id, 0, data, steps=2)
    model = build(model_id)
    spec = permgraph.infer(model, (data.train[0][:2],))
    assert spec.free_groups
    planted = random_permutation(spec, torch.Generator().manual_seed(7))
    theta1_0 = src.init()
    target_init = apply(spec, planted, theta1_0)
    params = [n for n, _ in model.named_parameters()]
    for method in ("gmt", "fgmt"):
        out = tmp_path / "out"
        res = run(method, src, target_init, data, out, model=model, spec=spec, linear=linear, T=2, model_id=model_id)
        traj = Trajectory(out / method)
        source_t = LinearTrajectory(theta1_0, src.final(), 2) if linear else None
        for t in range(3):
            expected = apply(spec, planted, source_t.at(t) if linear else src.load(t))
            got = traj.load(t)
            for k in params:
                torch.testing.assert_close(
                    got[k], expected[k], atol=1e-5, rtol=1e-5, msg=f"{method} t={t} {k}"
                )
        assert res["best_t"] in res["t"]


def test_naive_is_theta2_0_plus_source_change_exactly(tmp_path):
    data = tiny_data((6,), 3)
    src = record(tmp_path / "src", MLP, 0, data)
    init = record(tmp_path / "tgt", MLP, 1, data).init()
    run("naive", src, init, data, tmp_path / "out", linear=False, T=3)
    traj = Trajectory(tmp_path / "out" / "naive")
    theta1_0 = src.init()
    for t in range(4):
        theta1_t = src.load(t)
        for k, v in traj.load(t).items():
            assert torch.equal(v, init[k] + (theta1_t[k] - theta1_0[k])), k


def test_gmt_equals_fgmt_at_T1_and_runs_are_deterministic(tmp_path):
    data = tiny_data((6,), 3)
    src = record(tmp_path / "src", MLP, 0, data)
    init = record(tmp_path / "tgt", MLP, 1, data).init()
    gmt = run("gmt", src, init, data, tmp_path / "a", T=1)
    fgmt = run("fgmt", src, init, data, tmp_path / "a", T=1)
    again = run("fgmt", src, init, data, tmp_path / "b", T=1)
    assert gmt["val_acc"] == fgmt["val_acc"] == again["val_acc"]
    assert gmt["val_loss"] == fgmt["val_loss"] == again["val_loss"]
    a, b = Trajectory(tmp_path / "a" / "gmt").final(), Trajectory(tmp_path / "a" / "fgmt").final()
    assert all(torch.equal(a[k], b[k]) for k in a)
    results = json.loads((tmp_path / "a" / "results.json").read_text())
    assert set(results["methods"]) == {"gmt", "fgmt"} and results["setting"]["T"] == 1


def test_oracle_recovers_the_permutation_between_permuted_runs(tmp_path):
    """If the target run is the source run permuted, the oracle permutation is exactly that."""
    data = tiny_data((6,), 3)
    src = record(tmp_path / "src", MLP, 0, data)
    model = build(MLP)
    spec = permgraph.infer(model, (data.train[0][:2],))
    planted = random_permutation(spec, torch.Generator().manual_seed(3))
    w = TrajectoryWriter(tmp_path / "tgt", model=MLP)
    for i in range(len(src)):
        w.save(apply(spec, planted, src.load(i)), step=i, epoch=float(i))
    w.finish()
    res = run("oracle", src, tmp_path / "tgt", data, tmp_path / "out", target=tmp_path / "tgt", T=2)
    got = Trajectory(tmp_path / "out" / "oracle").final()
    expected = apply(spec, planted, src.final())
    for k, v in got.items():
        torch.testing.assert_close(v, expected[k], atol=1e-6, rtol=1e-6)
    assert res["val_acc"][-1] == max(res["val_acc"]) or res["best_t"] >= 0


@pytest.mark.parametrize("method", ["fgmt", "gmt"])
def test_interrupted_run_resumes_to_identical_results(tmp_path, method):
    data = tiny_data((6,), 3)
    src = record(tmp_path / "src", MLP, 0, data)
    init = record(tmp_path / "tgt", MLP, 1, data).init()
    full = run(method, src, init, data, tmp_path / "full", T=3)

    run_interrupted(method, src, init, data, tmp_path / "cut", T=3)
    assert not (tmp_path / "cut" / "results.json").exists()
    assert not (tmp_path / "cut" / method).exists()
    seen = []
    resumed = run(method, src, init, data, tmp_path / "cut", T=3, callback=lambda t, r: seen.append(t))
    assert seen == [3], "only the missing step is computed"
    for key in ("val_acc", "val_loss", "best_t", "t"):
        assert resumed[key] == full[key]
    a, b = Trajectory(tmp_path / "full" / method).final(), Trajectory(tmp_path / "cut" / method).final()
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(TransferError, match="another setting"):
        run(method, src, init, data, tmp_path / "cut", T=3, seed=5)


def test_bad_inputs_fail_clearly_and_write_nothing(tmp_path):
    data = tiny_data((6,), 3)
    src = record(tmp_path / "src", MLP, 0, data)
    other = record(tmp_path / "wide", "zoo:mlp2?width=10&in_features=6&num_classes=3", 1, data)
    out = tmp_path / "out"
    with pytest.raises(TransferError, match="shape"):
        run("fgmt", src, other.init(), data, out)
    conv = "zoo:conv8?width=0.125&num_classes=3"
    with pytest.raises(TransferError, match="architecture"):
        run("fgmt", src, build(conv).state_dict(), data, out)
    with pytest.raises(TransferError, match="unknown method 'sgd'"):
        run("sgd", src, 1, data, out)
    with pytest.raises(TransferError, match="does not exist"):
        run("fgmt", tmp_path / "nowhere", 1, data, out)
    (tmp_path / "src" / "ckpt_0000002.safetensors").unlink()
    with pytest.raises(TransferError, match="missing"):
        run("fgmt", tmp_path / "src", 1, data, out)
    with pytest.raises(TransferError, match="oracle needs"):
        run("oracle", src, 1, data, out)
    assert not out.exists()


def test_nan_gradients_fail_clearly_and_write_nothing(tmp_path):
    data = tiny_data((6,), 3)
    src = record(tmp_path / "src", MLP, 0, data)

    def nan_grad_loss(out, batch):
        # finite value, NaN gradient: d sqrt(|z|)/dz at z = 0
        return F.cross_entropy(out, batch[1]) + 0.0 * (out - out.detach()).abs().sqrt().sum()

    out = tmp_path / "out"
    with pytest.raises(FloatingPointError, match="gradient of parameter"):
        run("fgmt", src, 1, data, out, loss_fn=nan_grad_loss)
    assert not out.exists()

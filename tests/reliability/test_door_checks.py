"""Inputs are checked at the door: a non-permutation, a checkpoint holding NaN, a model of another
architecture or width and a user's factory that raises are refused before any work, with one line
that names the argument to change (``--model``, the source, the target) and exit code 2."""

from __future__ import annotations

import textwrap

import pytest
import torch
from reliability_kit import MODEL, transfer_args
from torch import nn

import permgraph
from transfer.checks import NOT_FINITE
from transfer.trajectory import Trajectory, TrajectoryWriter
from zoo.cli.permgraph import build_parser as permgraph_parser
from zoo.cli.permgraph import main as permgraph_cli
from zoo.cli.transfer import build_parser as transfer_parser
from zoo.cli.transfer import main as transfer
from zoo.cli.zoo import build_parser as zoo_parser
from zoo.cli.zoo import main as zoo

WIDER = MODEL.replace("width=8", "width=16")
OTHER = "zoo:mlp?depth=3&width=8&in_features=32&num_classes=4"


def one_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


# ------------------------------------------------------------------------------- permutations


def mlp_spec():
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2))
    return model, permgraph.infer(model, (torch.randn(2, 4),))


@pytest.mark.parametrize(
    "perm, says",
    [
        (torch.zeros(6, dtype=torch.long), "unit 0 appears 6 times"),
        (torch.tensor([0, 1, 2, 3, 4, 4]), "unit 4 appears 2 times"),
        (torch.tensor([0, 1, 2, 3, 4, 6]), "index 6 is outside 0..5"),
        (torch.tensor([0, 1, 2, 3, 4, -1]), "index -1 is outside 0..5"),
        (torch.arange(6.0), "torch.float32 tensor"),
    ],
)
def test_apply_refuses_what_is_not_a_permutation_naming_the_group(perm, says):
    model, spec = mlp_spec()
    with pytest.raises(ValueError, match="'0.out'") as raised:
        permgraph.apply(spec, {"0.out": perm}, model.state_dict())
    assert says in str(raised.value) and "\n" not in str(raised.value)


def test_apply_still_takes_every_real_permutation():
    model, spec = mlp_spec()
    p = torch.randperm(6)
    moved = permgraph.apply(spec, {"0.out": p}, model.state_dict())
    assert torch.equal(moved["0.weight"], model.state_dict()["0.weight"][p])


def test_apply_refuses_a_per_block_permutation_with_a_bad_block():
    model = nn.Sequential(nn.Conv2d(2, 4, 1), nn.GroupNorm(2, 4), nn.ReLU(), nn.Conv2d(4, 2, 1))
    spec = permgraph.infer(model, (torch.randn(1, 2, 3, 3),), per_block=True)
    inner = next(g for g in spec.free_groups if g.indexed_by)
    blocks = spec.group(inner.indexed_by).size
    good = torch.stack([torch.randperm(inner.size) for _ in range(blocks)])
    permgraph.apply(spec, {inner.name: good}, model.state_dict())
    bad = good.clone()
    bad[1] = 0  # block 1 copies unit 0 everywhere
    with pytest.raises(ValueError, match=rf"{inner.name!r} \(block 1\) is not a permutation"):
        permgraph.apply(spec, {inner.name: bad}, model.state_dict())


# ------------------------------------------------------------------------------- NaN / inf


def diverged_copy(run, dest):
    """``run`` with NaN in its final checkpoint, recorded as a complete trajectory of its own."""
    traj = Trajectory(run)
    final = traj.final()
    final["fc1.weight" if "fc1.weight" in final else next(iter(final))][0, 0] = float("nan")
    w = TrajectoryWriter(dest, model=traj.model, data=traj.data, seed=traj.seed, config=traj.config)
    w.save(traj.init(), step=0, epoch=0.0)
    w.save(final, step=1, epoch=1.0)
    w.finish()
    return dest


def test_every_command_refuses_a_nan_source_with_the_same_message(work, capsys):
    bad = diverged_copy(work / "s1", work / "nan_src")
    argv = ["run", "--method", "naive", "--source", str(bad), "--target-init", str(work / "s2"), "--T", "1",
            "--grad-batches", "1", "--batch-size", "32", "--out", str(work / "out"), "--no-progress"]  # fmt: skip
    assert transfer(argv) == 2
    run_err = one_line(capsys)
    assert transfer(["diagnose", str(bad), str(work / "s2"), "--grad-batches", "1", "--batch-size", "32"]) == 2
    diag_err = one_line(capsys)
    for err in (run_err, diag_err):
        assert f"the source's final checkpoint {NOT_FINITE}" in err
        assert "likely to help" not in err
    assert run_err.split(": error: ")[1] == diag_err.split(": error: ")[1]
    assert transfer(["match", str(work / "s2"), str(bad), "--out", str(work / "m")]) == 2
    assert f"run B's final checkpoint ({bad}) {NOT_FINITE}" in one_line(capsys)
    assert not (work / "out").exists() and not (work / "m").exists()


# ------------------------------------------------------------------------------- which argument


def test_a_wrong_width_model_is_called_model_not_the_source(work, capsys):
    assert transfer(transfer_args(work, work / "out", "--model", WIDER)) == 2
    err = one_line(capsys)
    assert f"does not fit the architecture of --model {WIDER!r}" in err
    assert f"the source trajectory {work / 's1'}" in err and "change --model" in err
    assert "the source has" not in err


def test_a_model_of_another_architecture_names_model_as_what_differs(work, capsys):
    assert transfer(transfer_args(work, work / "out", "--model", OTHER)) == 2
    err = one_line(capsys)
    assert f"--model {OTHER!r}" in err and "does not match the source's architecture" not in err
    assert transfer(["diagnose", str(work / "s1"), str(work / "s2"), "--model", OTHER]) == 2
    assert f"--model {OTHER!r}" in one_line(capsys)


def test_match_names_the_run_that_does_not_fit_the_model(work, tmp_path, capsys):
    assert transfer(["match", str(work / "s1"), str(work / "s2"), "--model", WIDER, "--out", str(tmp_path / "m")]) == 2
    err = one_line(capsys)
    assert f"run A ({work / 's1'}) does not fit the architecture of --model {WIDER!r}" in err
    assert not (tmp_path / "m").exists()


def test_a_target_of_another_width_is_named_as_the_target(work, tmp_path, capsys):
    from reliability_kit import RECIPE

    from zoo.train import TrainControl, train

    train(WIDER, "synthetic", RECIPE, seed=3, out=tmp_path / "wide", control=TrainControl(progress=False))
    argv = ["run", "--method", "naive", "--source", str(work / "s1"), "--target-init", str(tmp_path / "wide"),
            "--T", "1", "--grad-batches", "1", "--out", str(work / "out"), "--no-progress"]  # fmt: skip
    assert transfer(argv) == 2
    err = one_line(capsys)
    assert f"the target init ({tmp_path / 'wide'}) does not fit the architecture of the source's recorded model" in err


# ------------------------------------------------------------------------------- the user's factories

BROKEN = '''
def net():
    raise RuntimeError("my layer sizes do not add up")


def splits():
    raise ValueError("no such file: my_data.npz")


def tensor_splits():  # the usual mistake: each split as its tensors, not as a dataset of samples
    import torch

    x, y = torch.randn(40, 1, 28, 28), torch.randint(0, 10, (40,))
    return (x[:32], y[:32]), (x[32:], y[32:])


def no_datasets():
    return 3, 4
'''


@pytest.fixture
def broken_code(tmp_path, monkeypatch):
    (tmp_path / "broken_user_rel.py").write_text(textwrap.dedent(BROKEN))
    monkeypatch.syspath_prepend(str(tmp_path))


def test_a_users_model_factory_that_raises_is_bad_input_naming_it(broken_code, tmp_path, capsys):
    assert permgraph_cli(["inspect", "broken_user_rel:net"]) == 2
    err = one_line(capsys)
    assert "broken_user_rel.net" in err and "RuntimeError: my layer sizes do not add up" in err
    argv = ["train", "--model", "broken_user_rel:net", "--data", "synthetic", "--epochs", "1", "--lr", "0.1",
            "--seed", "0", "--out", str(tmp_path / "r"), "--no-progress"]  # fmt: skip
    assert zoo(argv) == 2
    assert "RuntimeError: my layer sizes do not add up" in one_line(capsys)
    assert not (tmp_path / "r").exists()


def test_a_users_dataset_factory_that_raises_is_bad_input_naming_it(broken_code, work, capsys):
    assert transfer(transfer_args(work, work / "out", "--data", "broken_user_rel:splits")) == 2
    err = one_line(capsys)
    assert "broken_user_rel.splits" in err and "ValueError: no such file: my_data.npz" in err
    assert not (work / "out").exists()


@pytest.mark.parametrize("factory, says", [("tensor_splits", "TensorDataset(x, y)"), ("no_datasets", "not a dataset")])
def test_splits_that_are_not_datasets_are_bad_input_saying_what_to_return(broken_code, tmp_path, capsys, factory, says):
    argv = ["train", "--model", "mlp2", "--data", f"broken_user_rel:{factory}", "--epochs", "1", "--lr", "0.1",
            "--seed", "0", "--out", str(tmp_path / "r"), "--no-progress"]  # fmt: skip
    assert zoo(argv) == 2
    err = one_line(capsys)
    assert "train split" in err and says in err
    assert not (tmp_path / "r").exists()


# ------------------------------------------------------------------------------- -v anywhere


@pytest.mark.parametrize(
    "parser, argv",
    [
        (permgraph_parser, ["inspect", MODEL]),
        (transfer_parser, ["diagnose", "a", "b"]),
        (transfer_parser, ["match", "a", "b"]),
        (zoo_parser, ["data", "synthetic"]),
    ],
)
def test_verbose_and_debug_work_before_and_after_the_sub_command(parser, argv):
    assert parser().parse_args([*argv, "-v"]).verbose is True
    assert parser().parse_args(["-v", *argv]).verbose is True
    assert parser().parse_args([*argv, "--debug"]).debug is True
    quiet = parser().parse_args(argv)
    assert quiet.verbose is False and quiet.debug is False

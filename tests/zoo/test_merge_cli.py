"""``transfer merge`` on a model and data of the user's own (``--model pkg.mod:factory``), and bad inputs."""

from __future__ import annotations

import json
import textwrap

import pytest
import torch
from safetensors.torch import load_file, save_file

import permgraph
from zoo.cli.transfer import main

USER_CODE = textwrap.dedent("""
    import torch
    from torch import nn
    from torch.utils.data import TensorDataset

    def net(width=16):
        return nn.Sequential(nn.Linear(5, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 3))

    def data():
        g = torch.Generator().manual_seed(0)
        x = torch.randn(96, 5, generator=g)
        y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()
        return TensorDataset(x[:64], y[:64]), TensorDataset(x[64:], y[64:])

    def wrong_data():
        x = torch.randn(40, 7)
        y = torch.zeros(40, dtype=torch.long)
        return TensorDataset(x[:32], y[:32]), TensorDataset(x[32:], y[32:])
""")


@pytest.fixture
def user(tmp_path, monkeypatch):
    """The user's module on sys.path, and checkpoints: A, B = A permuted, C = another init, W = another width."""
    (tmp_path / "mergeuser.py").write_text(USER_CODE)
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib

    mod = importlib.import_module("mergeuser")
    torch.manual_seed(0)
    model = mod.net()
    a = model.state_dict()
    spec = permgraph.infer(model, (torch.randn(2, 5),))
    b = permgraph.apply(spec, permgraph.random_permutation(spec, torch.Generator().manual_seed(3)), a)
    torch.manual_seed(1)
    c = mod.net().state_dict()
    w = mod.net(width=8).state_dict()
    paths = {}
    for name, state in (("a", a), ("b", b), ("c", c), ("w", w)):
        paths[name] = str(tmp_path / f"{name}.safetensors")
        save_file({k: v.contiguous() for k, v in state.items()}, paths[name])
    return tmp_path, paths, a


def _merge(paths, *extra, out) -> int:
    return main(
        [
            "merge",
            *paths,
            "--model",
            "mergeuser:net",
            "--data",
            "mergeuser:data",
            "--batch-size",
            "32",
            "--lambdas",
            "5",
            "--no-progress",
            "--out",
            str(out),
            *extra,
        ]
    )


def test_merging_a_model_with_its_permuted_copy_writes_flat_matched_curves_and_the_model(user) -> None:
    tmp, paths, a = user
    out = tmp / "m"
    assert _merge([paths["a"], paths["b"]], "--align", "weight", "--repair", out=out) == 0
    res = json.loads((out / "results.json").read_text())
    assert set(res["curves"]) == {"naive", "matched", "matched+repair"}
    for c in res["curves"].values():
        assert len(c["lambdas"]) == len(c["loss"]) == len(c["acc"]) == 5
    assert abs(res["curves"]["matched"]["loss_barrier"]) < 1e-5
    assert res["curves"]["naive"]["loss_barrier"] > res["curves"]["matched"]["loss_barrier"] + 1e-3
    assert "align" in res["timings"] and "curves" in res["timings"]
    assert (out / "merge.png").stat().st_size > 0
    merged = load_file(str(out / "merged.safetensors"))
    assert all(torch.allclose(merged[k], a[k], atol=1e-4) for k in a)


def test_three_models_by_activation_matching(user, capsys) -> None:
    tmp, paths, _ = user
    out = tmp / "m3"
    assert _merge([paths["a"], paths["b"], paths["c"]], "--align", "activation", out=out) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["merged"]["models"] == 3 and len(res["merged"]["endpoints"]) == 3
    assert set(res["curves"]) == {"naive", "matched"}
    assert "loss barrier" in capsys.readouterr().out


def test_mergemany_aligns_a_and_its_permuted_copy_into_one_frame(user) -> None:
    tmp, paths, _ = user
    out = tmp / "mm"
    assert _merge([paths["a"], paths["b"], paths["c"]], "--align", "weight", "--mergemany", out=out) == 0
    res = json.loads((out / "results.json").read_text())
    assert abs(res["curves"]["matched"]["loss_barrier"]) < 1e-5  # A and B, both as MergeMany aligned them


def test_a_second_run_resumes_from_the_saved_points(user) -> None:
    tmp, paths, _ = user
    out = tmp / "r"
    assert _merge([paths["a"], paths["c"]], "--align", "none", out=out) == 0
    progress = json.loads((out / "merge_progress.json").read_text())
    progress["points"]["naive"]["0.0"] = [123.0, 0.5]  # a point measured before: not measured again
    (out / "merge_progress.json").write_text(json.dumps(progress))
    assert _merge([paths["a"], paths["c"]], "--align", "none", out=out) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["curves"]["naive"]["loss"][0] == 123.0 and set(res["curves"]) == {"naive"}


@pytest.mark.parametrize(
    "case, expected",
    [
        ("other_width", "does not fit"),
        ("wrong_data", "failed"),
        ("wrong_input", "failed"),
        ("one_model", "at least 2 models"),
        ("missing", "neither a run folder nor"),
        ("not_safetensors", "not a readable safetensors"),
        ("foreign_out", "did not write"),
    ],
)
def test_bad_inputs_exit_2_with_one_line(user, capsys, case: str, expected: str) -> None:
    tmp, paths, _ = user
    models, extra, out = [paths["a"], paths["b"]], [], tmp / "bad"
    if case == "other_width":
        models = [paths["a"], paths["w"]]
    elif case == "wrong_data":
        extra = ["--data", "mergeuser:wrong_data"]
    elif case == "wrong_input":
        extra = ["--input", "2,7"]
    elif case == "one_model":
        models = [paths["a"]]
    elif case == "missing":
        models = [paths["a"], str(tmp / "nope.safetensors")]
    elif case == "not_safetensors":
        (tmp / "junk.safetensors").write_bytes(b"not a checkpoint")
        models = [paths["a"], str(tmp / "junk.safetensors")]
    elif case == "foreign_out":
        out.mkdir()
        (out / "notes.txt").write_text("mine")
    assert _merge(models, *extra, out=out) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err, err
    if case == "foreign_out":
        assert (out / "notes.txt").read_text() == "mine" and not (out / "results.json").exists()
    # a refused merge leaves nothing behind: no marker or lock in the user's folder, no folder it created
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"] if case == "foreign_out" else not out.exists()


ZOO_MLP = "zoo:mlp?depth=2&width=16&in_features=5&num_classes=3"


def _run_folder(path, model_id: str, state: dict) -> str:
    from transfer.trajectory import TrajectoryWriter

    with TrajectoryWriter(path, model=model_id, data="mnist", seed=0) as w:
        w.save(state, step=0, epoch=0.0)
        w.save(state, step=1, epoch=1.0)
    return str(path)


def test_run_folders_give_the_model_id_and_runs_of_two_models_are_refused(user, capsys) -> None:
    from zoo.models import build

    tmp, _, _ = user
    torch.manual_seed(0)
    a = _run_folder(tmp / "ra", ZOO_MLP, build(ZOO_MLP).state_dict())
    b = _run_folder(tmp / "rb", ZOO_MLP, build(ZOO_MLP).state_dict())
    other = ZOO_MLP.replace("width=16", "width=8")
    c = _run_folder(tmp / "rc", other, build(other).state_dict())
    common = ["--data", "mergeuser:data", "--batch-size", "32", "--lambdas", "3", "--no-progress"]
    assert main(["merge", a, b, *common, "--out", str(tmp / "ok")]) == 0
    assert json.loads((tmp / "ok" / "results.json").read_text())["model"] == ZOO_MLP
    assert main(["merge", a, c, *common, "--out", str(tmp / "no")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "different architectures" in err, err

"""Every experiment runs in its tiny configuration (``--tiny``: small widths, a few hundred samples or
synthetic data, one epoch) and writes its results JSON, plots and markdown page; experiments that
build on another's runs find them in the shared pool instead of training again."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import pytest

from zoo.cli.experiments import main, parse_sets
from zoo.errors import ZooError
from zoo.experiments import names
from zoo.experiments.kit.base import load_config
from zoo.experiments.kit.config import CONFIG_DIR, deep_merge, read_config
from zoo.experiments.kit.runner import run_experiment


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("experiments")


def run_tiny(root: Path, name: str, **kw) -> dict:
    out = run_experiment(name, tiny=True, runs=root / name, docs=root / "docs", progress=False, **kw)
    written = json.loads((root / "docs" / f"{name}.json").read_text())
    assert written["experiment"] == name and written == json.loads(json.dumps(out))
    md = (root / "docs" / f"{name}.md").read_text()
    header = md.split("\n\n")[1]  # the standard header: command, config file, date
    assert md.startswith("# ") and f"`python -m zoo.experiments {name} --tiny" in header
    assert f"configs/{name}.toml" in header and datetime.date.today().isoformat() in header
    pngs = list((root / "docs").glob(f"{name}*.png"))
    assert pngs, f"{name} wrote no plot"
    for png in pngs:
        assert png.stat().st_size > 1000
        assert png.name in md
    return out


def curve_ok(values: list[float]) -> bool:
    return all(0.0 <= v <= 1.0 for v in values)


def test_every_experiment_module_registers_one_and_the_kit_none():
    """Listing imports every module of zoo.experiments: each registers at least one experiment, and
    no experiment is registered from the kit (its classes are bases, not pages)."""
    import pkgutil

    import zoo.experiments as package
    from zoo.experiments.kit.base import experiments

    homes = {cls.__module__ for cls in experiments().values()}
    modules = {f"zoo.experiments.{m.name}" for m in pkgutil.iter_modules(package.__path__) if not m.ispkg}
    assert homes == modules - {"zoo.experiments.__main__"}
    assert {"pretrained", "resnet_pretrained", "gpt_pretrained", "vit_pretrained", "bert_pretrained"} <= set(names())


def test_every_config_checks_in_both_sizes_and_has_a_tiny_table():
    for name in names():
        assert load_config(name, tiny=True) != load_config(name), f"configs/{name}.toml has no [tiny] table"
        assert "notes" not in read_config(CONFIG_DIR / f"{name}.toml")  # readings live in docs/results
    load_config("conv8", CONFIG_DIR / "conv8_cifar10.toml")


def test_fig5a(root):
    out = run_tiny(root, "fig5a")
    assert [v["name"] for v in out["variants"]] == ["uniform, 2 batches", "uniform, 1 batch"]
    curves = out["variants"][0]["curves"]
    assert set(curves) == {"gmt", "fgmt", "naive", "oracle"}
    for curve in curves.values():
        assert len(curve["mean"]) == 3 and curve_ok(curve["mean"])
    md = (root / "docs" / "fig5a.md").read_text()
    assert "official code" in md and "paper v2" in md


def test_connectivity_reuses_fig5a_runs(root):
    before = sorted(p.name for p in (root / "_runs").iterdir())
    out = run_tiny(root, "connectivity")
    assert sorted(p.name for p in (root / "_runs").iterdir()) == before  # nothing trained or transferred
    paths = out["cases"][0]["methods"]["fgmt"]["paths"]
    assert len(paths) == 3
    for p in paths.values():
        assert len(p["loss"]) == len(out["alphas"]) and curve_ok(p["acc"])
    assert out["cases"][0]["methods"]["fgmt"]["perm_residual"] < 1e-5  # the recovered permutation is exact


def test_trajectories(root):
    out = run_tiny(root, "trajectories")
    assert set(out["cases"][0]["variants"]) == {"linear, uniform", "linear, cosine", "actual"}
    for res in out["cases"][0]["variants"].values():
        assert set(res) == {"fgmt", "naive"}


def test_fig5a_gap(root):
    out = run_tiny(root, "fig5a_gap")
    assert [v["name"] for v in out["variants"]] == ["base", "init x0.25", "1 gradient batch"]
    assert all(v["init_to_change_ratio"] > 0 for v in out["variants"])
    # a smaller init makes init/change smaller
    assert out["variants"][1]["init_to_change_ratio"] < out["variants"][0]["init_to_change_ratio"]


def test_conv8_transfer_then_finetune(root):
    out = run_tiny(root, "conv8")
    ft = out["finetune"]
    assert set(ft["curves"]) == {"standard", "fgmt"}
    assert len(ft["curves"]["fgmt"]) == len(ft["curves"]["standard"]) == 2
    assert set(out["transfer"]) == {"fgmt", "naive"}
    assert len(out["planted_control"]["val_acc"]) == len(out["transfer"]["fgmt"]["val_acc"])


def test_ensembles_reuse_conv8(root):
    out = run_tiny(root, "ensembles")
    for kind in ("full", "fgmt"):
        s = out["stats"][kind]["val"]
        assert len(s["members"]) == 2 and curve_ok(s["members"]) and 0 <= s["ensemble"] <= 1
        assert len(s["by_size"]) == 2


def test_pretrained(root):
    out = run_tiny(root, "pretrained")
    assert out["pretrain_data"].startswith("mnist[0,1,2,3,4]")
    assert out["task_data"].startswith("mnist[5,6,7,8,9]")
    assert set(out["finetune"]["curves"]) == {"standard", "fgmt"}


def test_pretrained_keeps_the_pool_layout_it_was_published_with(root):
    """The Conv8 page runs through the pairs' pipeline under its own layout: task fine-tunings named
    without the reinit_head flag, fine-tunings from a transferred point without a seed (seed 0). A
    rerun of the published page finds its recorded runs only while these names hold (a transfer's
    name holds the results format: one of an older format is computed again beside it)."""
    from transfer.records import FORMAT
    from zoo.experiments.kit.pool import settings_key

    out = run_tiny(root, "pretrained")  # reuses the pool of test_pretrained
    cfg, pool = load_config("pretrained", tiny=True), root / "_runs"
    (pre_source,) = pool.glob("conv8_mnist-0-1-2-3-4-*_s101")
    (pre_target,) = pool.glob("conv8_mnist-0-1-2-3-4-*_s102")
    recipe = dict(cfg["task"]["train"])
    source, target = (pool / f"taskft_{settings_key(str(run), head, out['task_data'], recipe)}"
                      for run, head in ((pre_source, 201), (pre_target, 202)))  # fmt: skip
    key = settings_key(str(source), str(target), None, out["task_data"], cfg["transfer"], FORMAT)  # results format
    transfer = pool / f"transfer_{key}"
    best_t = out["finetune"]["start_t"]["fgmt"]
    finetune = pool / f"finetune_{settings_key(str(transfer / 'fgmt'), best_t, out['finetune']['recipe'])}"
    for folder in (source, target, transfer, finetune):
        assert folder.is_dir(), f"{folder.name} is not in the pool: the page's layout changed"


@pytest.mark.parametrize("name", ["resnet_pretrained", "gpt_pretrained", "vit_pretrained", "bert_pretrained"])
def test_pretrained_pairs_write_the_published_schema(root, name):
    """pairs; per method its best transferred accuracy per pair; per fine-tuning arm epoch 1 and final."""
    out = run_tiny(root, name)
    cfg = load_config(name, tiny=True)
    assert out["pairs"] == cfg["seeds"]
    assert set(out["methods"]) == set(cfg["methods"])
    for entry in out["methods"].values():
        assert len(entry["best_val_acc"]) == len(cfg["seeds"]) and curve_ok(entry["best_val_acc"])
    assert set(out["finetune"]) == {"from_fgmt", "from_naive", "scratch"}
    for arm in out["finetune"].values():
        assert set(arm) == {"epoch1_val_acc", "final_val_acc"} and curve_ok(arm["final_val_acc"])
    assert out["per_pair"][0]["diagnose"]["verdict"] in ("likely", "unlikely")


def test_random_init_reports_the_ratio_and_the_margins_over_naive(root):
    out = run_tiny(root, "random_init")
    (case,) = out["cases"]
    assert case["pairs"][0]["diagnose"]["ratio_total"] > 0
    assert set(case["margins"]) == {"fgmt", "naive", "random"} and case["margins"]["naive"] == [0.0]


@pytest.mark.parametrize("name", ["vit_tiny", "gpt_tiny"])
def test_attention_models_transfer_through_head_groups(root, name):
    out = run_tiny(root, name)
    structures = {s for g in out["groups"] if not g["blocked"] for s in g["structures"]}
    assert any(s.startswith("block-expanded") for s in structures)  # whole heads
    assert any(s.startswith("factor 1 of") for s in structures)  # dims within a head
    assert set(out["transfer"]) == {"fgmt", "naive"}


def test_set_overrides_and_bad_names(capsys):
    assert parse_sets(["train.epochs=3", 'only=["a b"]', "data=mnist"]) == {
        "train": {"epochs": 3}, "only": ["a b"], "data": "mnist",
    }  # fmt: skip
    assert deep_merge({"a": {"b": 1, "c": 2}}, {"a": {"b": 5}}) == {"a": {"b": 5, "c": 2}}
    with pytest.raises(ZooError, match="unknown experiment"):
        run_experiment("no-such-experiment")
    assert main(["no-such-experiment"]) == 2
    assert main(["fig5a", "--set", "novalue"]) == 2
    assert main(["list"]) == 0
    listed = capsys.readouterr().out
    assert [line.split()[0] for line in listed.splitlines()] == names()
    from zoo.cli.zoo import main as zoo_main

    assert zoo_main(["experiment", "list"]) == 0  # `zoo experiment NAME` is the same command
    assert "connectivity" in capsys.readouterr().out

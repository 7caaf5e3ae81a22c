"""The merging experiments in their tiny configurations (``--tiny``): each writes the published
shape, its page and plot, reuses its stored pairs on a rerun, and refuses a bad config naming the key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from zoo.errors import ZooError
from zoo.experiments.kit.base import load_config
from zoo.experiments.kit.runner import run_experiment

ALIGN_KEYS = {"midpoint_acc", "midpoint_acc_repair", "loss_barrier", "acc_barrier"}


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("merge_experiments")


def run_tiny(root: Path, name: str, **kw) -> dict:
    out = run_experiment(name, tiny=True, runs=root / name, docs=root / "docs", progress=False, **kw)
    assert json.loads((root / "docs" / f"{name}.json").read_text()) == json.loads(json.dumps(out))
    md = (root / "docs" / f"{name}.md").read_text()
    assert f"`python -m zoo.experiments {name} --tiny" in md and f"{name}.png" in md
    assert (root / "docs" / f"{name}.png").stat().st_size > 1000
    return out


def fraction(values) -> bool:
    return all(0.0 <= v <= 1.0 for v in values)


def check_block(block: dict, pairs: list, aligns: set[str]) -> None:
    """The shape the issue fixes for merge_mlp, and numbers that agree with the stored curves."""
    assert block["pairs"] == pairs
    assert set(block["endpoints"]) == {"a_acc", "b_acc"}
    assert set(block["align"]) == aligns
    for name, v in block["align"].items():
        assert set(v) == ALIGN_KEYS and all(len(x) == len(pairs) for x in v.values())
        assert fraction(v["midpoint_acc"]) and fraction(v["midpoint_acc_repair"])
        for i, curve in enumerate(block["curves"][name]["plain"]):
            # every curve starts at A and ends at B (π(B) computes what B computes)
            assert curve["acc"][0] == block["endpoints"]["a_acc"][i]
            assert curve["acc"][-1] == block["endpoints"]["b_acc"][i]
            assert v["midpoint_acc"][i] == curve["acc"][len(curve["acc"]) // 2]
            assert v["loss_barrier"][i] == pytest.approx(max(curve["loss"]) - 0.5 * (curve["loss"][0] + curve["loss"][-1]))


def test_merge_mlp_writes_the_published_shape_and_reuses_its_pairs(root):
    out = run_tiny(root, "merge_mlp")
    check_block(out, [[1, 2]], {"naive", "activation"})
    assert list(out["probes"]) == ["tiny probe"]
    check_block(out["probes"]["tiny probe"], [[1, 2]], {"naive", "activation"})
    md = (root / "docs" / "merge_mlp.md").read_text()
    assert "71.68" in md and "82.96" in md  # REPAIR's numbers beside ours
    # the hidden layers' groups were inferred, not written: fc1.out and fc2.out for depth 2
    assert out["groups"] == {"fc1.out": 16, "fc2.out": 16}
    assert out["timings"][0]["activation"]["groups_by"] == {"activation": 2}
    stored = sorted((root / "merge_mlp" / "pairs").iterdir())
    again = run_tiny(root, "merge_mlp")
    assert sorted((root / "merge_mlp" / "pairs").iterdir()) == stored and again["align"] == out["align"]


def test_merge_rebasin_mlp_reports_the_barrier_cut(root):
    out = run_tiny(root, "merge_rebasin_mlp")
    check_block(out, [[1, 2]], {"naive", "weight", "activation"})
    md = (root / "docs" / "merge_rebasin_mlp.md").read_text()
    assert "Loss barrier per pair" in md and "% cut" in md


def test_merge_many_merges_three_models(root):
    out = run_tiny(root, "merge_many")
    assert out["triples"] == [[1, 2, 3]] and len(out["members_acc"][0]) == 3
    assert list(out["merges"]) == ["naive average", "weight: align to the first", "weight: MergeMany",
                                   "activation: align to the first", "activation: MergeMany"]  # fmt: skip
    for v in out["merges"].values():
        assert fraction(v["acc"]) and fraction(v["acc_repair"])
    assert out["merges"]["weight: MergeMany"]["sweeps"][0] >= 1
    assert out["merges"]["naive average"]["sweeps"][0] == 0


def test_merge_resnet20_resets_batchnorm(root):
    out = run_tiny(root, "merge_resnet20", overrides={"widths": [0.25], "aligns": ["naive", "weight"]})
    block = out["settings"]["width 0.25×"]
    check_block(block, [[1, 2]], {"naive", "weight"})
    assert block["timings"][0]["weight"]["bn_reset"] is True  # BatchNorm net: the repair is BN reset
    assert "+ BN reset" in (root / "docs" / "merge_resnet20.md").read_text()


def test_merge_transformers_match_every_inferred_group(root):
    out = run_tiny(root, "merge_transformers", overrides={"aligns": ["naive", "activation"]})
    assert list(out["settings"]) == ["vit_tiny on MNIST", "gpt_tiny on text"]
    for block in out["settings"].values():
        check_block(block, [[1, 2]], {"naive", "activation"})
        # every inferred group is matched, by its activations or (a group without a clean one, such
        # as heads the fused attention op mixes) by weights with the others fixed
        by = block["timings"][0]["activation"]["groups_by"]
        assert by.get("activation", 0) >= 1 and sum(by.values()) == len(block["groups"])


@pytest.mark.parametrize(
    "name, overrides, words",
    [
        ("merge_mlp", {"aligns": ["naive", "magic"]}, "aligns"),
        ("merge_mlp", {"pairs": [[1, 1]]}, "pairs"),
        ("merge_mlp", {"points": 2}, "points"),
        ("merge_mlp", {"probes": [{"name": "x"}]}, "train"),
        ("merge_many", {"triples": [[1, 2]]}, "triples"),
        ("merge_resnet20", {"widths": []}, "widths"),
        ("merge_transformers", {"settings": [{"name": "v", "model": "zoo:vit_tiny", "data": "mnist"}]}, "train"),
    ],
)
def test_bad_configs_fail_before_training_naming_the_key(name, overrides, words):
    with pytest.raises(ZooError, match=words):
        load_config(name, tiny=True, overrides=overrides)

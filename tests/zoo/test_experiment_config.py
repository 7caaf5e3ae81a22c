"""A config is checked when it is loaded, before anything trains: a misspelled key fails at once with
one line naming the key and its table (exit status 2), not an hour into the experiment."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from transfer.options import OptionsError
from zoo.cli.experiments import main
from zoo.errors import ZooError
from zoo.experiments.kit.base import load_config
from zoo.experiments.kit.config import CONFIG_DIR

ROOT = Path(__file__).resolve().parents[2]


def misspelled(tmp_path: Path, name: str, old: str, new: str) -> Path:
    text = (CONFIG_DIR / f"{name}.toml").read_text()
    assert old in text
    path = tmp_path / f"{name}.toml"
    path.write_text(text.replace(old, new, 1))
    return path


def test_a_misspelled_train_key_fails_at_load_time_with_exit_2(tmp_path):
    config = misspelled(tmp_path, "fig5a", "\n[train]\nepochs = 15", "\n[train]\nepocs = 15")
    runs = tmp_path / "runs"
    cmd = [sys.executable, "-m", "zoo.experiments", "fig5a", "--tiny", "--config", str(config),
           "--runs", str(runs / "fig5a"), "--docs", str(tmp_path / "docs"), "--no-progress"]  # fmt: skip
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "'epocs'" in lines[0] and "[train]" in lines[0] and "fig5a.toml" in lines[0]
    assert not runs.exists() and not (tmp_path / "docs").exists()  # nothing trained, nothing written


def test_a_misspelled_top_level_key_fails_at_load_time_with_exit_2(tmp_path, capsys):
    config = misspelled(tmp_path, "conv8", "planted_control = true", "planted_contrl = true")
    runs = tmp_path / "runs"
    assert main(["conv8", "--tiny", "--config", str(config), "--runs", str(runs), "--docs", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown key 'planted_contrl'" in err[0] and "planted_control" in err[0]
    assert not runs.exists()


@pytest.mark.parametrize(
    ("name", "sets", "error", "words"),
    [
        ("fig5a_gap", {"base": {"transfer": {"grad_batchs": 2}}}, OptionsError, ["'grad_batchs'", "'base'"]),
        ("fig5a_gap", {"variants": [{"name": "x", "widht": 3}]}, ZooError, ["'widht'", "[[variants]] 'x'"]),
        ("fig5a_gap", {"only": ["no such row"]}, ZooError, ["'no such row'", "'init x0.25'"]),
        ("fig5a", {"variants": [{"schedule": "cosin"}]}, OptionsError, ["cosin", "variants"]),
        ("conv8", {"finetune": {"lr": -1.0}}, OptionsError, ["lr", "[finetune]"]),
        ("conv8", {"methods": ["fgmt", "gtm"]}, ZooError, ["'gtm'", "methods"]),
        ("pretrained", {"task": {"lables": [5]}}, ZooError, ["'lables'", "[task]"]),
        ("connectivity", {"cases": [{"from": "fig5b"}]}, ZooError, ["unknown experiment 'fig5b'"]),
    ],
)
def test_bad_keys_and_values_name_themselves(name, sets, error, words):
    with pytest.raises(error) as e:
        load_config(name, tiny=True, overrides=sets)
    for word in words:
        assert word in str(e.value)


def test_a_missing_key_is_named(tmp_path):
    config = misspelled(tmp_path, "ensembles", "members = [102, 103, 104]\n", "")
    with pytest.raises(ZooError, match="lacks 'members'"):
        load_config("ensembles", config)


@pytest.mark.parametrize(
    ("name", "sets", "words"),
    [
        ("fig5a_gap", {"variants": [{"width": 8}]}, ["[[variants]] None", "lacks 'name'"]),
        ("connectivity", {"cases": [{"model": "zoo:mlp2"}]}, ["lacks", "'seeds'"]),
        ("trajectories", {"cases": [{"name": "x"}]}, ["names no experiment"]),
    ],
)
def test_a_row_without_what_it_needs_is_named(name, sets, words):
    with pytest.raises(ZooError) as e:
        load_config(name, tiny=True, overrides=sets)
    for word in words:
        assert word in str(e.value)

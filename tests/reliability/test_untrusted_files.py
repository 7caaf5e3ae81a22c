"""Promise 1: a received file never chooses code to run. Model ids read from manifests or results
name only built-in models; resume state and dataset pickles are never unpickled as code."""

from __future__ import annotations

import ast
import json
import pickle
import subprocess
from pathlib import Path

import numpy as np
import pytest
from reliability_kit import MODEL, transfer_args

from zoo.cli.permgraph import main as permgraph
from zoo.cli.transfer import main as transfer
from zoo.data import load
from zoo.errors import ZooError

PAYLOAD = "subprocess:getoutput?cmd=touch {flag}"


def plant(manifest: Path, flag: Path) -> None:
    doc = json.loads(manifest.read_text())
    doc["model"] = PAYLOAD.format(flag=flag)
    manifest.write_text(json.dumps(doc))


def test_a_manifest_naming_code_runs_nothing(work, capsys):
    flag = work / "pwned"
    plant(work / "s1" / "manifest.json", flag)
    assert transfer(transfer_args(work, work / "out")) == 2
    assert "names Python code to import ('subprocess')" in capsys.readouterr().err
    assert transfer(["match", str(work / "s1"), str(work / "s2")]) == 2
    assert not flag.exists()
    # the user may say what the model is: --model is typed, so trusted (the manifest's id is not used)
    assert transfer(["match", str(work / "s1"), str(work / "s2"), "--model", MODEL]) == 0
    assert not flag.exists()


def test_a_results_file_naming_code_runs_nothing(work, capsys):
    out = work / "out"
    assert transfer(transfer_args(work, out)) == 0
    flag = work / "pwned"
    results = json.loads((out / "results.json").read_text())
    results["setting"]["model"] = PAYLOAD.format(flag=flag)
    (out / "results.json").write_text(json.dumps(results))
    assert transfer(["finetune", "--from", str(out), "--epochs", "1", "--no-progress"]) == 2
    assert "names Python code" in capsys.readouterr().err and not flag.exists()


def test_a_users_own_module_is_imported_when_they_name_it(user_code, capsys):
    """--model / a typed id is the user's: their own module:factory is built, with several inputs."""
    assert permgraph(["inspect", "user_models_rel:two_inputs", "--input", "2,4", "--input", "2,3"]) == 0
    assert "free groups" in capsys.readouterr().out
    assert permgraph(["inspect", "user_models_rel:two_inputs", "--input", "2,4"]) == 2
    assert "pass --input SHAPE once per input" in capsys.readouterr().err


def pickle_loads_in_the_code() -> list[str]:
    """Every ``torch.load`` / ``pickle.load(s)`` call in the packages (ast, not text)."""
    root = Path(__file__).resolve().parents[2]
    found = []
    for package in ("permgraph", "transfer", "zoo"):
        for path in (root / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                    owner = node.func.value
                    if isinstance(owner, ast.Name) and (owner.id, node.func.attr) in UNSAFE:
                        found.append(f"{path.relative_to(root)}:{node.lineno}")
    return found


UNSAFE = {("torch", "load"), ("pickle", "load"), ("pickle", "loads"), ("pickle", "Unpickler")}


def test_training_resume_state_is_json_and_safetensors_never_a_pickle():
    from zoo.train import TRAIN_STATE_FILES

    assert TRAIN_STATE_FILES == ("train_state.json", "train_state.safetensors")
    assert pickle_loads_in_the_code() == []


class _Evil:
    def __reduce__(self):
        return (subprocess.getoutput, ("touch " + str(_Evil.flag),))


def test_a_dataset_pickle_with_a_payload_is_refused(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    _Evil.flag = tmp_path / "pwned"
    batch = {b"data": np.zeros((4, 3072), dtype=np.uint8), b"labels": [0, 1, 2, 3], b"evil": _Evil()}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (folder / name).write_bytes(pickle.dumps(batch))
    with pytest.raises(ZooError, match="refusing to read a dataset pickle that asks for subprocess.getoutput"):
        load("cifar10", tmp_path)
    assert not _Evil.flag.exists()

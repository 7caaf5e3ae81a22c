"""Promise 6, fuzzed: whatever a received manifest, transfer state, results file or training resume
state holds, a command exits 0 (correct behaviour) or 2 (one line), never 3 or a traceback, and never
loses or changes an input file."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reliability_kit import MODEL, RECIPE, record_run, transfer_args, tree_hash

from zoo.cli.transfer import main as transfer
from zoo.cli.zoo import main as zoo

FUZZ = settings(max_examples=20, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 10**6) | st.floats(allow_nan=True) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)


@st.composite
def mutations(draw):
    """A change to a JSON file: bytes cut or replaced, or one field (at any depth) given another value."""
    kind = draw(st.sampled_from(["truncate", "garbage", "field", "drop"]))
    return kind, draw(st.integers(0, 10**6)), draw(json_values)


def mutate(path: Path, mutation) -> None:
    kind, where, value = mutation
    data = path.read_bytes()
    if kind == "truncate":
        path.write_bytes(data[: where % max(len(data), 1)])
        return
    if kind == "garbage":
        i = where % max(len(data), 1)
        path.write_bytes(data[:i] + b"\x00\xff}{" + data[i + 4 :])
        return
    doc = json.loads(data)
    node, key = _pick(doc, where)
    if kind == "drop" and isinstance(node, dict):
        node.pop(key, None)
    else:
        node[key] = value
    path.write_text(json.dumps(doc))


def _pick(doc, where: int):
    """A (container, key) somewhere in ``doc``, chosen by ``where``."""
    spots = []

    def walk(node):
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
        for k, v in items:
            spots.append((node, k))
            walk(v)

    walk(doc)
    return spots[where % len(spots)] if spots else (doc, "x")


def fresh_copy(runs: Path) -> Path:
    root = Path(tempfile.mkdtemp(prefix="fuzz_"))
    for name in ("s1", "s2"):
        shutil.copytree(runs / name, root / name)
    return root


def check_inputs_kept(root: Path, before: dict) -> None:
    for name in ("s1", "s2"):
        assert tree_hash(root / name) == before[name], f"{name} changed"


def finetune_args(root: Path) -> list[str]:
    return ["finetune", "--from", str(root / "out"), "--epochs", "1", "--no-progress"]


def run_args(root: Path) -> list[str]:
    return transfer_args(root, root / "out")


# a received file (below the fuzzed copy's root; one in out/ is mutated after a first transfer wrote it)
# and the commands that then read it, in order
MUTATED = {
    "source manifest": ("s1/manifest.json", (run_args,)),
    "transfer state": ("out/.state/fgmt/state.json", (run_args,)),
    "results file": ("out/results.json", (finetune_args, run_args)),
}


@pytest.mark.parametrize("case", list(MUTATED))
@FUZZ
@given(mutation=mutations())
def test_a_mutated_received_file(runs, case, mutation):
    name, commands = MUTATED[case]
    root = fresh_copy(runs)
    if name.startswith("out/"):
        assert transfer(run_args(root)) == 0
    mutate(root / name, mutation)
    before = {n: tree_hash(root / n) for n in ("s1", "s2")}
    for argv in commands:
        assert transfer(argv(root)) in (0, 2)
    check_inputs_kept(root, before)
    shutil.rmtree(root)


@FUZZ
@given(mutation=mutations())
def test_a_mutated_training_resume_state(tmp_path_factory, mutation):
    out = tmp_path_factory.mktemp("interrupted") / "run"
    record_run(out, 0, stop_after_epochs=1)
    mutate(out / "train_state.json", mutation)
    argv = ["train", "--model", MODEL, "--data", "synthetic", "--epochs", str(RECIPE.epochs), "--lr", str(RECIPE.lr),
            "--seed", "0", "--out", str(out), "--no-progress"]  # fmt: skip
    assert zoo(argv) in (0, 2)

"""``OUT/results.json``: one entry per method, all of one setting.

::

    {"setting": {model, data, source, target_init, T, schedule, ...},
     "methods": {"fgmt": {"t": [...], "val_acc": [...], "val_loss": [...], "best_t": 3, ...}, ...}}

Accuracies are fractions. Methods are added one at a time; a method of another setting is refused,
so the numbers side by side in one file are always comparable.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from transfer.files import atomic_write_json

__all__ = ["TransferError", "load_results", "with_method", "merge_result", "best_method"]

RESULTS = "results.json"
# the advice for a damaged results.json; following it works (tests/reliability)
REWRITE = (
    "delete {path} and re-run the same transfer command: finished methods are rewritten from their saved "
    "state (.state/) without recomputing"
)


class TransferError(ValueError):
    """Inputs that cannot be transferred (wrong architecture, missing target run, bad out folder)."""


def load_results(out: str | os.PathLike) -> dict | None:
    """The ``results.json`` of an output folder, or None if there is none yet."""
    path = Path(out) / RESULTS
    if not path.exists():
        return None
    try:
        results = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise TransferError(f"{path} is not readable JSON ({e}); {REWRITE.format(path=path)}") from e
    if not isinstance(results, dict) or not isinstance(results.get("methods"), dict):
        raise TransferError(f"{path} is not a transfer results file (no 'methods' table); {REWRITE.format(path=path)}")
    setting = results.get("setting")
    if not isinstance(setting, dict) or not all(isinstance(setting.get(k), str) for k in ("model", "data")):
        raise TransferError(f"{path} has no valid 'setting' table; {REWRITE.format(path=path)}")
    for method, entry in results["methods"].items():
        if not _valid_entry(entry):
            raise TransferError(
                f"{path}: the entry of {method!r} is damaged (it needs val_acc, val_loss and best_t); "
                + REWRITE.format(path=path)
            )
    return results


def _valid_entry(entry: Any) -> bool:
    if not isinstance(entry, dict):
        return False
    acc, loss, best = entry.get("val_acc"), entry.get("val_loss"), entry.get("best_t")
    numbers = all(
        isinstance(v, list) and v and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)
        for v in (acc, loss)
    )
    return numbers and isinstance(best, int) and not isinstance(best, bool) and 0 <= best < len(acc)


def with_method(out: Path, existing: Mapping[str, Any] | None, setting: Mapping[str, Any], method: str,
                result: Mapping[str, Any]) -> dict:  # fmt: skip
    """``existing`` (the results of ``out``, as read, or None) with ``method``'s entry added or replaced,
    written to ``out/results.json``; refuses another setting."""
    results = {**existing, "methods": dict(existing["methods"])} if existing else {"setting": dict(setting), "methods": {}}
    if results.get("setting") != dict(setting):
        raise TransferError(f"{out / RESULTS} holds results of another setting; use another --out")
    results["methods"][method] = dict(result)
    atomic_write_json(out / RESULTS, results)
    return results


def merge_result(out: Path, setting: Mapping[str, Any], method: str, result: Mapping[str, Any]) -> dict:
    """Add (or replace) ``method``'s entry in ``out/results.json``; refuses another setting."""
    return with_method(out, load_results(out), setting, method, result)


def best_method(results: Mapping[str, Any]) -> str:
    """The method whose best transferred point has the highest validation accuracy."""
    methods = results.get("methods", {})
    if not methods:
        raise TransferError("results.json lists no method; run `transfer run` first")
    return max(methods, key=lambda m: methods[m]["val_acc"][methods[m]["best_t"]])

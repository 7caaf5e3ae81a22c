"""``OUT/results.json``: one entry per method, all of one setting (:class:`~transfer.records.ResultsFile`).

::

    {"format": 2,
     "setting": {model, data, source, target_init, T, schedule, ...},
     "methods": {"fgmt": {"t": [...], "val_acc": [...], "val_loss": [...], "best_t": 3, ...}, ...}}

Accuracies are fractions. Methods are added one at a time; a method of another setting is refused,
so the numbers side by side in one file are always comparable. A command reads the file once
(:func:`load_results`, checked field by field) and passes the :class:`ResultsFile` along.
"""

from __future__ import annotations

import os
from pathlib import Path

from transfer.files import atomic_write_json
from transfer.records import ResultsFile, TransferError, read_json

__all__ = ["TransferError", "load_results", "write_results", "best_method"]

RESULTS = "results.json"
# the advice for a damaged results.json; following it works (tests/reliability)
REWRITE = (
    "delete {path} and re-run the same transfer command: finished methods are rewritten from their saved "
    "state (.state/) without recomputing"
)


def load_results(out: str | os.PathLike) -> ResultsFile | None:
    """The ``results.json`` of an output folder, checked, or None if there is none yet. A file of
    another format is refused (rerun into a new folder); a damaged one names the field."""
    path = Path(out) / RESULTS
    if not path.exists():
        return None
    fix = REWRITE.format(path=path)
    return ResultsFile.from_json(read_json(path, "readable JSON", fix), str(path), fix)


def write_results(out: Path, results: ResultsFile) -> None:
    """Write ``results`` to ``out/results.json`` (atomically)."""
    atomic_write_json(out / RESULTS, results.to_json())


def best_method(results: ResultsFile) -> str:
    """The method whose best transferred point has the highest validation accuracy."""
    return results.best_method()

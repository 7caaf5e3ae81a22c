"""The typed records a transfer writes and reads back: the resume record, a method's result, the results file.

Each is a dataclass with ``to_json`` (the dict written as JSON) and ``from_json`` (the dict read, checked
field by field: a wrong type or a missing field raises :class:`TransferError` with one line naming the
field and what to do), as the Hugging Face Trainer keeps its ``TrainerState``. A record is checked once,
where it is read, so the code that uses it relies on its types instead of re-checking strings.

- :class:`RunRecord`: ``OUT/.state/<method>/state.json``, what a run commits after every step to resume.
- :class:`MethodResult`: a method's entry of ``OUT/results.json`` (also what ``TransferEngine.run`` returns,
  as its ``to_json`` dict).
- :class:`ResultsFile`: ``OUT/results.json``: the setting every method shares, and the methods' entries.

Both files carry ``"format": FORMAT``. A file of an older version (no ``format`` field, or another one) is
refused with the advice to rerun into a new folder: it is never rewritten or deleted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from transfer.lap import LapProofs

__all__ = [
    "TransferError", "FORMAT", "OLD_RESULTS", "RunRecord", "MethodResult", "ResultsFile", "check_format", "read_json",
]  # fmt: skip

# The format of results.json and .state/<method>/state.json. 1: the files before the field existed (no
# "format" key); 2: the typed records of this module.
FORMAT = 2
# what to do with a results file of another format (it is never rewritten)
OLD_RESULTS = "run the transfer again with a new --out folder (nothing in this one is changed)"


class TransferError(ValueError):
    """Inputs that cannot be transferred (wrong architecture, missing target run, bad out folder), or a
    record that cannot be read."""


def check_format(data: Any, what: str, fix: str) -> None:
    """Refuse a record of another format (``what``: how the message names it; ``fix``: what to do)."""
    got = data.get("format", 1) if isinstance(data, dict) else None
    if got != FORMAT:
        shown = "no format field: format 1" if isinstance(data, dict) and "format" not in data else f"format {got!r}"
        raise TransferError(f"{what} was written by another version of transfer run ({shown}; this version reads "
                            f"format {FORMAT}); {fix}")  # fmt: skip


def read_json(path: Path, what: str, fix: str, error: type[TransferError] = TransferError) -> Any:
    """The JSON document ``path`` holds, of any type (the caller checks it). A file that cannot be read
    or parsed raises ``error``: "``path`` is not ``what`` (why); ``fix``" (one line, what to do)."""
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise error(f"{path} is not {what} ({e}); {fix}") from e


# ---------------------------------------------------------------------------------- field checks


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _numbers(x: Any) -> bool:
    return isinstance(x, list) and all(_is_number(v) for v in x)


def _ints(x: Any) -> bool:
    return isinstance(x, list) and all(_is_int(v) for v in x)


def _seconds_table(x: Any) -> bool:
    return isinstance(x, dict) and all(isinstance(k, str) and _is_number(v) for k, v in x.items())


_CHECKS = {
    "number": _is_number,
    "int": _is_int,
    "str": lambda x: isinstance(x, str),
    "bool": lambda x: isinstance(x, bool),
    "numbers": _numbers,
    "ints": _ints,
    "table": lambda x: isinstance(x, dict),
    "seconds": _seconds_table,
}
_NAMES = {"number": "a number", "int": "an integer", "str": "a string", "bool": "true or false",
          "numbers": "a list of numbers", "ints": "a list of integers", "table": "a table",
          "seconds": "a table of seconds"}  # fmt: skip


class _Fields:
    """Reads fields of one JSON table, raising one line (``what``: the record, ``fix``: what to do)."""

    def __init__(self, data: Any, what: str, fix: str) -> None:
        if not isinstance(data, dict):
            raise TransferError(f"{what} is not a table (it is {type(data).__name__}); {fix}")
        self.data, self.what, self.fix = data, what, fix

    def fail(self, problem: str) -> TransferError:
        return TransferError(f"{self.what} is damaged ({problem}); {self.fix}")

    def get(self, key: str, kind: str, *, optional: bool = False) -> Any:
        if key not in self.data:
            if optional:
                return None
            raise self.fail(f"it has no {key!r}")
        value = self.data[key]
        if optional and value is None:
            return None
        if not _CHECKS[kind](value):
            shown = repr(value)
            raise self.fail(f"{key!r} must be {_NAMES[kind]}, not {shown[:40] + '...' if len(shown) > 40 else shown}")
        return value

    def proofs(self, key: str) -> LapProofs:
        """A :class:`~transfer.lap.LapProofs` table: its known fields, each of its type."""
        table = self.get(key, "table", optional=True)
        if table is None:
            return LapProofs()
        kinds = {f.name: str(f.type) for f in fields(LapProofs)}  # "int", "float", "dict[str, int]"
        for name, value in table.items():
            if name not in kinds:
                raise self.fail(f"{key!r} has an unknown field {name!r}")
            if kinds[name] == "dict[str, int]":
                if not isinstance(value, dict) or not all(isinstance(k, str) and _is_int(v) for k, v in value.items()):
                    raise self.fail(f"{key!r}.{name} must be a table of counts")
            elif (kind := {"int": "int", "float": "number"}.get(kinds[name])) and not _CHECKS[kind](value):
                raise self.fail(f"{key!r}.{name} must be {_NAMES[kind]}")
        return LapProofs(**{k: dict(v) if isinstance(v, dict) else v for k, v in table.items()})


# ---------------------------------------------------------------------------------- the resume record


@dataclass
class RunRecord:
    """What ``OUT/.state/<method>/state.json`` holds after step ``done`` (-1: none yet): the setting
    the run was started with (a resume must match it exactly), each finished step's validation loss and
    accuracy, the time spent (the method's steps, evaluation, assignment solves, phases) and what the
    solves proved. ``complete``: every step 0..T is done."""

    setting: dict[str, Any]
    done: int = -1
    val_acc: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    seconds: float = 0.0
    eval_seconds: float = 0.0
    lsa_calls: int = 0
    lsa_seconds: float = 0.0
    complete: bool = False
    phases: dict[str, float] = field(default_factory=dict)
    lap_proofs: LapProofs = field(default_factory=LapProofs)
    format: int = FORMAT

    def commit(self, t: int, T: int, loss: float, acc: float, lsa_calls: int, lsa_seconds: float,
               proofs: LapProofs) -> None:  # fmt: skip
        """Record step ``t`` as done, with its evaluation and the solves it made."""
        self.val_loss.append(loss)
        self.val_acc.append(acc)
        self.lsa_calls += lsa_calls
        self.lsa_seconds += lsa_seconds
        self.lap_proofs.merge(proofs)
        self.done, self.complete = t, t == T

    def to_json(self) -> dict[str, Any]:
        return {
            "format": self.format, "setting": dict(self.setting), "done": self.done, "val_acc": list(self.val_acc),
            "val_loss": list(self.val_loss), "seconds": self.seconds, "eval_seconds": self.eval_seconds,
            "lsa_calls": self.lsa_calls, "lsa_seconds": self.lsa_seconds, "complete": self.complete,
            "phases": dict(self.phases), "lap_proofs": self.lap_proofs.to_json(),
        }  # fmt: skip

    @classmethod
    def from_json(cls, data: Any, T: int, what: str = "the resume record", fix: str = "start the method over") -> RunRecord:
        """The record ``data`` holds for a run of ``T`` steps (``T``: its setting's), checked."""
        check_format(data, what, fix)
        f = _Fields(data, what, fix)
        done = f.get("done", "int")
        if not -1 <= done <= T:
            raise f.fail(f"'done' is {done}, outside -1..{T}")
        lists = {k: f.get(k, "numbers") for k in ("val_acc", "val_loss")}
        if any(len(v) != done + 1 for v in lists.values()):
            raise f.fail(f"val_acc and val_loss must hold {done + 1} numbers (steps 0..{done})")
        return cls(
            setting=dict(f.get("setting", "table")), done=done, val_acc=list(lists["val_acc"]),
            val_loss=list(lists["val_loss"]), seconds=f.get("seconds", "number"),
            eval_seconds=f.get("eval_seconds", "number"), lsa_calls=f.get("lsa_calls", "int"),
            lsa_seconds=f.get("lsa_seconds", "number"), complete=f.get("complete", "bool"),
            phases=dict(f.get("phases", "seconds")), lap_proofs=f.proofs("lap_proofs"),
        )  # fmt: skip


# ---------------------------------------------------------------------------------- a method's result


@dataclass
class MethodResult:
    """A method's entry of ``results.json``: validation accuracy (a fraction) and loss per step t, the
    best step on validation accuracy (the earliest of equals), the steps' and the evaluations' seconds,
    the assignment solves (count, seconds, what they proved), the schedule's lambdas (a linear source)
    or the source steps used (the recorded trajectory), the real target run (Oracle), the number of
    processes, the seconds per phase and the command's wall time for this method, and whether the
    transferred trajectory ``OUT/<method>/`` was written."""

    t: list[int]
    val_acc: list[float]
    val_loss: list[float]
    best_t: int
    seconds: float
    eval_seconds: float
    lsa_calls: int
    lsa_seconds: float
    lap_proofs: LapProofs = field(default_factory=LapProofs)
    lambdas: list[float] | None = None
    source_steps: list[int] | None = None
    target: str | None = None
    world_size: int = 1
    phases: dict[str, float] = field(default_factory=dict)
    wall_seconds: float | None = None
    trajectory: bool = False

    @staticmethod
    def best_of(acc: list[float]) -> int:
        """The step of the highest accuracy; the earliest among equals."""
        return max(range(len(acc)), key=lambda i: (acc[i], -i))

    def to_json(self) -> dict[str, Any]:
        """The entry as written; a field that does not apply (``lambdas`` of a recorded source, ``target``
        of a method without one, ``wall_seconds`` of a run not timed from its start) is left out."""
        out: dict[str, Any] = {
            "t": list(self.t), "val_acc": list(self.val_acc), "val_loss": list(self.val_loss), "best_t": self.best_t,
            "seconds": self.seconds, "eval_seconds": self.eval_seconds, "lsa_calls": self.lsa_calls,
            "lsa_seconds": self.lsa_seconds, "lap_proofs": self.lap_proofs.to_json(),
        }  # fmt: skip
        for key in ("lambdas", "source_steps", "target"):
            if (value := getattr(self, key)) is not None:
                out[key] = list(value) if isinstance(value, list) else value
        out["world_size"] = self.world_size
        out["phases"] = dict(self.phases)
        if self.wall_seconds is not None:
            out["wall_seconds"] = self.wall_seconds
        out["trajectory"] = self.trajectory
        return out

    @classmethod
    def from_json(cls, data: Any, what: str = "the method's result", fix: str = "run the method again") -> MethodResult:
        f = _Fields(data, what, fix)
        acc, loss, t = f.get("val_acc", "numbers"), f.get("val_loss", "numbers"), f.get("t", "ints")
        if not acc or len(loss) != len(acc) or len(t) != len(acc):
            raise f.fail("t, val_acc and val_loss must hold one entry per step, at least one")
        best = f.get("best_t", "int")
        if not 0 <= best < len(acc):
            raise f.fail(f"best_t {best} is not one of the steps 0..{len(acc) - 1}")
        world = f.get("world_size", "int")
        if world < 1:
            raise f.fail(f"world_size is {world}; it counts processes, at least 1")
        return cls(
            t=list(t), val_acc=list(acc), val_loss=list(loss), best_t=best, seconds=f.get("seconds", "number"),
            eval_seconds=f.get("eval_seconds", "number"), lsa_calls=f.get("lsa_calls", "int"),
            lsa_seconds=f.get("lsa_seconds", "number"), lap_proofs=f.proofs("lap_proofs"),
            lambdas=_copy(f.get("lambdas", "numbers", optional=True)),
            source_steps=_copy(f.get("source_steps", "ints", optional=True)),
            target=f.get("target", "str", optional=True), world_size=world, phases=dict(f.get("phases", "seconds")),
            wall_seconds=f.get("wall_seconds", "number", optional=True), trajectory=f.get("trajectory", "bool"),
        )  # fmt: skip


def _copy(x: list | None) -> list | None:
    return None if x is None else list(x)


# ---------------------------------------------------------------------------------- the results file


@dataclass
class ResultsFile:
    """``OUT/results.json``: the ``setting`` every method shares (model, data, source, target init, T,
    schedule, ... and their hashes: what decides the numbers) and one :class:`MethodResult` per method."""

    setting: dict[str, Any]
    methods: dict[str, MethodResult] = field(default_factory=dict)
    format: int = FORMAT

    def with_method(self, method: str, result: MethodResult) -> ResultsFile:
        """A copy with ``method``'s entry added, or replaced (in its place)."""
        return ResultsFile(dict(self.setting), {**self.methods, method: result})

    def best_method(self) -> str:
        """The method whose best transferred point has the highest validation accuracy."""
        if not self.methods:
            raise TransferError("results.json lists no method; run `transfer run` first")
        return max(self.methods, key=lambda m: self.methods[m].val_acc[self.methods[m].best_t])

    def to_json(self) -> dict[str, Any]:
        return {"format": self.format, "setting": dict(self.setting),
                "methods": {m: r.to_json() for m, r in self.methods.items()}}  # fmt: skip

    @classmethod
    def from_json(cls, data: Any, what: str = "results.json", fix: str = "rerun into a new --out folder") -> ResultsFile:
        if not isinstance(data, dict) or not isinstance(data.get("methods"), dict):
            raise TransferError(f"{what} is not a transfer results file (no 'methods' table); {fix}")
        check_format(data, what, OLD_RESULTS)
        setting = data.get("setting")
        if not isinstance(setting, dict) or not all(isinstance(setting.get(k), str) for k in ("model", "data")):
            raise TransferError(f"{what} has no valid 'setting' table; {fix}")
        methods = {}
        for name, entry in data["methods"].items():
            methods[name] = MethodResult.from_json(entry, f"{what}: the entry of {name!r}", fix)
        return cls(dict(setting), methods)

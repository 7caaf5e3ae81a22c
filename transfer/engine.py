"""The transfer engine: one loop for every method, with evaluation, resume files and outputs.

For t = 0..T the registered method (:mod:`transfer.methods`) chooses ``pi_t``; the engine evaluates

    theta_2^t = theta_2^0 + pi_t (theta_1^t - theta_1^0)

on the validation split (BatchNorm statistics re-estimated first, as the paper does), commits the
step to the run's store, and at the end writes the transferred trajectory ``OUT/<method>/`` (with
the permutation of every step, :func:`load_permutations`) and the method's entry of
``OUT/results.json``.

The engine takes objects: an ``nn.Module`` (its architecture; its weights are not used), data with
training and validation splits (:func:`transfer.data.as_transfer_data`), a loss, and trajectories.
Model ids and dataset names are resolved by the caller (``zoo``, the command lines).

Example (a tiny run; see the user guide for a real one)::

    engine = TransferEngine(model, data, TransferOptions(T=5))
    result = engine.run("fgmt", "runs/src", "runs/tgt", out="runs/transfer")
    result["val_acc"], result["best_t"]
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from permgraph.apply import State
from permgraph.spec import PermSpec
from transfer import distributed as dist
from transfer.cache import save_spec
from transfer.checks import check_finite, check_same_architecture
from transfer.context import SourcePoints, transferred_state
from transfer.data import as_transfer_data
from transfer.evaluation import LossFn
from transfer.identity import open_trajectory, state_sha, trajectory_sha
from transfer.inputs import ModelInputs, inputs_from_batch
from transfer.loop import Loop, RunContext, load_record
from transfer.methods import TransferMethod, get_method
from transfer.options import TransferOptions
from transfer.outputs import SPEC_FILE, TransferFolder, agree, load_permutations, owned_by_transfer, transfer_output
from transfer.phases import PHASES, PhaseClock, TimedGradients, TimedStore, process_age
from transfer.results import TransferError
from transfer.spec_lookup import find_spec, lookup_key
from transfer.store import MemoryStore
from transfer.trajectory import Trajectory
from transfer.writer import RunOutputs

__all__ = [
    "TransferEngine", "TransferError", "run_transfer", "transferred_state", "state_sha", "trajectory_sha",
    "owned_by_transfer", "open_trajectory", "transfer_output", "TransferFolder", "load_permutations", "PHASES",
    "process_age",
]  # fmt: skip

log = logging.getLogger(__name__)

TargetInit = Mapping[str, torch.Tensor] | Trajectory | str | os.PathLike
Callback = Callable[[int, dict], None]


class TransferEngine:
    """Transfers trajectories of one architecture on one dataset; several methods share its spec.

    ``model`` gives the architecture (it is used as a scratch module; its own weights are never
    read). ``spec`` defaults to ``permgraph.infer`` on ``example_inputs`` (default: a batch of two
    training samples, called as the model is called on every batch: :mod:`transfer.inputs`),
    inferred once, preserving the outputs ``options.outputs`` names (a given spec must preserve the
    same ones). ``loss_fn(outputs, batch)`` must be a mean (default: cross-entropy).
    """

    def __init__(
        self,
        model: nn.Module,
        data: Any,
        options: TransferOptions | None = None,
        *,
        loss_fn: LossFn | None = None,
        spec: PermSpec | None = None,
        example_inputs: ModelInputs | None = None,
        model_name: str | None = None,
    ) -> None:
        self.model = model
        # how messages name the model when an input does not fit it (the CLI: "--model ID" or the recorded id)
        self.model_name = model_name or f"the engine's model ({type(model).__name__})"
        self.example_inputs = example_inputs
        self.options = options or TransferOptions()
        if self.options.device == "auto":
            self.options = self.options.replace(device=dist.default_device("auto"))
        self.data = as_transfer_data(data, num_workers=self.options.num_workers)
        self.loss_fn = loss_fn
        if spec is not None and spec.outputs != self.options.outputs:  # the setting would misname what it preserves
            raise TransferError(
                f"the given spec preserves {_preserved(spec.outputs)} but the options say "
                f"{_preserved(self.options.outputs)}; infer it with permgraph.infer(outputs=...) as "
                "TransferOptions(outputs=...) names them, or pass no spec"
            )
        self._spec = spec
        self.param_keys = [n for n, _ in model.named_parameters(remove_duplicate=False)]
        self._pending: dict[str, float] = {}  # phases before the next run (start-up, data, spec): its entry reports them
        self._spec_key: str | None = None  # the cache key of a found or inferred spec (None: given, or not cacheable)
        self._read: dict[str, tuple[tuple[str, str], Any]] = {}  # the last input run read per role (_read_once)

    def note_phase(self, name: str, seconds: float) -> None:
        """Report a phase the caller spent before the engine's work (``"startup"``, ``"data"``): the
        next :meth:`run`'s ``results.json`` entry lists it, so that entry's phases add up to its
        share of the command's wall time (a second method run by the same engine shares them)."""
        if name not in PHASES:
            raise ValueError(f"unknown phase {name!r}; one of {', '.join(PHASES)}")
        self._pending[name] = self._pending.get(name, 0.0) + float(seconds)

    @property
    def spec(self) -> PermSpec:
        """The spec (given, cached, or inferred once: :meth:`_find_spec`)."""
        if self._spec is None:
            self._spec = self._find_spec(None)
        return self._spec

    def _find_spec(self, out: Path | None) -> PermSpec:
        """The cached spec of this model (``OUT/.state/spec.json``, then the user cache of
        :mod:`transfer.cache`), else ``permgraph.infer`` on two training inputs; kept in both places.
        A cached spec is used only under the key of this model, these inputs and this permgraph, and
        after checking it against the model's tensors; anything else is ignored and inferred again.
        Under torch.distributed only rank 0 reads and writes the output folder's copy."""
        t0 = time.perf_counter()
        inputs = self.example_inputs or inputs_from_batch(self.model, self.data.example_batch())
        outputs = self.options.outputs
        key = self._spec_key = lookup_key(self.model, inputs, outputs)
        local = out / ".state" / SPEC_FILE if out is not None and dist.is_main() else None
        spec = find_spec(self.model, inputs, key, local, outputs)
        self._pending["spec"] = self._pending.get("spec", 0.0) + time.perf_counter() - t0
        return spec

    def run(
        self,
        method: str,
        source: Trajectory | str | os.PathLike,
        target_init: TargetInit,
        *,
        target: Trajectory | str | os.PathLike | None = None,
        out: str | os.PathLike | TransferFolder | None = None,
        callback: Callback | None = None,
    ) -> dict:
        """Transfer ``source`` onto ``target_init`` (a state dict, or a run whose first checkpoint
        is the init) with ``method``; returns the method's entry of ``results.json``
        (:class:`~transfer.records.MethodResult`'s ``to_json``). ``target``: the real target run
        (Oracle). ``out``: where the transferred trajectory, ``results.json`` and the resume state go
        (None: nothing is written): a folder, claimed for this run, or one a command already holds for
        several runs (:func:`transfer_output`; it is not claimed again, nor its ``results.json`` read
        again). ``callback(t, record)`` runs after each step (``record``: the resume record's JSON)."""
        started = time.perf_counter()
        cls = _method_class(method)
        src, ends = self._source(source)
        theta2_0, init_desc, init_sha = self._target_init(target_init)
        tgt = self._target_run(cls, target, theta2_0)
        setting = self._setting(cls.name, src, (init_desc, init_sha), tgt)
        data = (src, ends, theta2_0, tgt)
        if out is None:
            return self._run(cls, setting, data, None, (callback, started))
        inputs = {"source trajectory": src.path, "target run": tgt.path if tgt else None,
                  "target init": _path_of(target_init)}  # fmt: skip
        with contextlib.ExitStack() as held:
            if isinstance(out, TransferFolder):  # a command holds it for all its methods
                folder = out
            else:  # held (claimed, results.json read) for this run
                folder = held.enter_context(transfer_output(out, f"transfer run --method {cls.name}"))
            replaced = self.options.write_trajectory
            agree((lambda: folder.check(cls.name, inputs, setting, replaced=replaced)) if dist.is_main() else None)
            return self._run(cls, setting, data, folder, (callback, started))

    def _run(self, cls: type[TransferMethod], setting: dict, inputs: tuple, folder: TransferFolder | None,
             call: tuple) -> dict:  # fmt: skip
        src, ends, theta2_0, tgt = inputs
        callback, started = call
        out = folder.path if folder is not None else None
        clock = PhaseClock()
        store = TimedStore(out / ".state" / cls.name, clock) if out is not None and dist.is_main() else MemoryStore()
        record = load_record(store, setting)  # before anything is written: a refused record leaves the folder as it was
        t_spec = time.perf_counter()
        spec = self._spec_for_run(out)
        spec_seconds = time.perf_counter() - t_spec
        ctx = RunContext(
            clock=clock,
            spec=spec,
            options=self.options,
            gradients=TimedGradients(self.model, self.data, self.options, loss_fn=self.loss_fn, clock=clock),
            source=SourcePoints(src, self.param_keys, self.options, ends=ends),
            theta2_0=theta2_0,
            store=store,
            target=tgt,
        )
        outputs = RunOutputs(ctx, setting, folder)
        loop = Loop(cls(ctx), setting, out, outputs)
        try:
            record = loop.run(record, callback)
            store.close()  # the resume files' writer ends with the run (a failed write is raised here)
        except BaseException as e:
            store.abort(e)  # no write left pending; one that failed is noted on e
            outputs.abort()
            raise
        before, self._pending = self._pending, {}
        before["inputs"] = max(0.0, loop.ready_at - started - spec_seconds)
        # wall time of this method's share of the command: what the caller reported, a spec inferred
        # before this run, and the run itself
        outside = before.get("startup", 0.0) + before.get("data", 0.0) + max(0.0, before.get("spec", 0.0) - spec_seconds)
        return outputs.write(record, before, started - outside)

    def _spec_for_run(self, out: Path | None) -> PermSpec:
        """The spec, found or inferred once per engine; a found or inferred one (never one the caller
        gave) is also kept in ``OUT/.state/spec.json`` of every output folder it serves."""
        if self._spec is None:
            self._spec = self._find_spec(out)
        elif self._spec_key is not None and out is not None and dist.is_main():
            local = out / ".state" / SPEC_FILE
            if not local.exists():
                save_spec(local, self._spec_key, self._spec)
        return self._spec

    # ---- inputs ---------------------------------------------------------------------
    def _read_once(self, role: str, run: Trajectory, read: Callable[[], Any]) -> Any:
        """``read()`` of ``run``, or what it returned the last time for this ``role`` and the same run (its
        path and content hash): a command running several methods on the same runs reads, checks and
        hashes each checkpoint once. Only the last run per role is kept (what one run holds anyway)."""
        key = (str(run.path.resolve()), trajectory_sha(run))
        last = self._read.get(role)
        if last is None or last[0] != key:
            last = self._read[role] = (key, read())
        return last[1]

    def _source(self, source: Trajectory | str | os.PathLike) -> tuple[Trajectory, tuple[State, State]]:
        """The source run, checked, and its first and last checkpoints (read and hashed once)."""
        src = open_trajectory(source, "source trajectory")
        if not src.complete and not self.options.allow_incomplete:
            last = src.steps[-1] if src.steps else 0
            raise TransferError(
                f"source trajectory {src.path} is incomplete (its training stopped at step {last}); finish it by "
                "re-running its training command, or allow it (allow_incomplete=True, --allow-incomplete)"
            )
        if len(src) < 2:
            raise TransferError(f"source trajectory {src.path} has {len(src)} checkpoint(s); it needs init and final")
        return src, self._read_once("source", src, lambda: self._source_ends(src))

    def _source_ends(self, src: Trajectory) -> tuple[State, State]:
        theta1_0 = src.init()
        check_same_architecture(self.model.state_dict(), theta1_0, f"the source trajectory {src.path} (recorded model "
                                 f"{src.model!r})", self.model_name)  # fmt: skip
        check_finite(theta1_0, "the source init")
        theta1_T = src.final()
        check_finite(theta1_T, "the source's final checkpoint")
        return theta1_0, theta1_T

    def _target_init(self, target_init: TargetInit) -> tuple[State, str, str]:
        """θ₂⁰ (checked), how the setting names it, and its content hash."""
        if isinstance(target_init, Mapping):
            theta2_0 = {k: v.detach().cpu().clone() for k, v in target_init.items()}
            return theta2_0, "state_dict", self._checked_init(theta2_0, "state_dict")
        run = open_trajectory(target_init, "target init")
        desc = str(run.path)

        def read() -> tuple[State, str]:
            theta2_0 = run.init()
            return theta2_0, self._checked_init(theta2_0, desc)

        theta2_0, sha = self._read_once("target init", run, read)
        return theta2_0, desc, sha

    def _checked_init(self, theta2_0: State, desc: str) -> str:
        check_same_architecture(self.model.state_dict(), theta2_0, f"the target init ({desc})", self.model_name)
        check_finite(theta2_0, "the target init")
        return state_sha(theta2_0)

    def _target_run(self, cls: type[TransferMethod], target: Any, theta2_0: State) -> Trajectory | None:
        if not cls.needs_target:
            return None
        if target is None:
            raise TransferError(f"{cls.name} needs the real target run: pass target= (CLI: --target RUN)")
        tgt = open_trajectory(target, "target run")
        check_same_architecture(self.model.state_dict(), tgt.final(), f"the target run {tgt.path}", self.model_name)
        t_init = tgt.init()
        if any(not torch.equal(t_init[k], theta2_0[k]) for k in theta2_0 if torch.is_floating_point(theta2_0[k])):
            raise TransferError(
                f"the target run {tgt.path} did not start from the given target init; {cls.name} compares "
                "changes from the same init (pass --target-init the same run)"
            )
        return tgt

    def _setting(self, method: str, src: Trajectory, init: tuple[str, str], tgt: Trajectory | None) -> dict:
        """Everything that determines a method's numbers; a resumed run must match it exactly. ``init``:
        how the target init is named, and its content hash."""
        return {
            "method": method,
            "model": src.model,
            "data": self.data.name,
            "source": str(src.path),
            "source_sha": trajectory_sha(src),
            "target_init": init[0],
            "target_init_sha": init[1],
            **self.options.setting(),
            "target": str(tgt.path) if tgt is not None else None,
            "target_sha": trajectory_sha(tgt) if tgt is not None else None,
        }


def _preserved(outputs: tuple[str, ...] | None) -> str:
    return "every output" if outputs is None else "only " + ", ".join(outputs)


def _method_class(method: str) -> type[TransferMethod]:
    try:
        return get_method(method)
    except ValueError as e:
        raise TransferError(str(e)) from None


def _path_of(target_init: TargetInit) -> Path | None:
    if isinstance(target_init, Mapping):
        return None
    return target_init.path if isinstance(target_init, Trajectory) else Path(target_init)


def run_transfer(
    method: str,
    source: Trajectory | str | os.PathLike,
    target_init: TargetInit,
    *,
    model: nn.Module,
    data: Any,
    options: TransferOptions | None = None,
    target: Trajectory | str | os.PathLike | None = None,
    out: str | os.PathLike | None = None,
) -> dict:
    """One method's transfer (see :class:`TransferEngine`; build an engine to run several methods
    with one inferred spec, or to pass a loss, a spec or a per-step callback)."""
    engine = TransferEngine(model, data, options)
    return engine.run(method, source, target_init, target=target, out=out)

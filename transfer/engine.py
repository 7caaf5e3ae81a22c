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
import hashlib
import logging
import os
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from safetensors.torch import save as save_tensors
from torch import nn
from tqdm.auto import tqdm

import permgraph
from permgraph.spec import PermSpec
from transfer import distributed as dist
from transfer.cache import load_spec, save_spec, spec_cache_file, spec_key
from transfer.checks import check_finite, check_same_architecture
from transfer.context import SourcePoints, TransferContext, transferred_state
from transfer.data import as_transfer_data
from transfer.evaluation import LossFn
from transfer.files import MARKER, FolderError, atomic_write_bytes, output_folder, refuse_inputs_inside, temporary_folder
from transfer.gradients import SyncedGradients
from transfer.inputs import ModelInputs, infer_spec, inputs_from_batch
from transfer.lap import LapProofs, LapWarm
from transfer.matching import Matcher
from transfer.methods import TransferMethod, get_method
from transfer.options import TransferOptions
from transfer.pairs import PairSource
from transfer.results import TransferError, load_results, merge_result
from transfer.store import MemoryStore, RunStore
from transfer.trajectory import Trajectory, TrajectoryError, TrajectoryWriter, schedule_lambdas

__all__ = [
    "TransferEngine", "TransferError", "run_transfer", "transferred_state", "state_sha", "trajectory_sha",
    "owned_by_transfer", "open_trajectory", "transfer_output", "load_permutations", "PHASES", "process_age",
]  # fmt: skip

log = logging.getLogger(__name__)

State = dict[str, torch.Tensor]
TargetInit = Mapping[str, torch.Tensor] | Trajectory | str | os.PathLike
Callback = Callable[[int, dict], None]
PERMUTATIONS = "permutations.safetensors"  # beside a transferred trajectory's checkpoints: pi_t of every step
SPEC_FILE = "spec.json"  # OUT/.state/spec.json: the inferred spec, so a rerun or another method does not trace again
# Where a transfer's wall time goes (results.json "phases", seconds). Before the steps: the command's start-up
# (interpreter, imports, building the model) and data loading (reported by the caller, transfer run), reading
# and checking the inputs, the spec. In the steps: gradients, accumulating pairs into cost matrices (and the
# method's own work), assignment solves, evaluation (transferred state, BatchNorm statistics, validation
# pass), resume files. After: the transferred trajectory. "other" is what falls between them.
PHASES = ("startup", "data", "inputs", "spec", "gradients", "accumulate", "solves", "evaluation", "state", "writing")
LOOP_PHASES = ("gradients", "accumulate", "solves", "evaluation", "state")


def process_age() -> float | None:
    """Seconds since this process started (Linux ``/proc``), or None where that cannot be read: the
    start-up phase of a command, interpreter and imports included."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22, starttime, in clock ticks since boot
        return max(0.0, time.clock_gettime(time.CLOCK_BOOTTIME) - started)
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def state_sha(state: Mapping[str, torch.Tensor]) -> str:
    """A short content hash of a state dict (keys and tensor bytes, in key order)."""
    h = hashlib.sha256()
    for k in sorted(state):
        h.update(k.encode())
        h.update(state[k].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _check_finite(state: Mapping[str, torch.Tensor], what: str) -> None:
    check_finite(state, what)  # one check, one message for every command (transfer.checks)


def _check_same_architecture(expected: Mapping[str, torch.Tensor], got: Mapping[str, torch.Tensor], what: str,
                             model: str = "the model") -> None:  # fmt: skip
    check_same_architecture(expected, got, what, model)


def open_trajectory(traj: Trajectory | str | os.PathLike, what: str) -> Trajectory:
    """A :class:`Trajectory`, with a missing or corrupt folder reported as a :class:`TransferError`."""
    if isinstance(traj, Trajectory):
        return traj
    try:
        return Trajectory(traj)
    except TrajectoryError as e:
        raise TransferError(f"{what}: {e}") from e


def _still_exact(model: torch.nn.Module, spec: PermSpec, inputs: ModelInputs) -> bool:
    """Whether a cached spec still leaves ``model``'s function unchanged (``permgraph.verify``): the
    cache key names the model's classes' files, not every file its forward calls, so a hit is checked
    before it is trusted, as an inferred spec is checked by its rules. A few forward passes: first
    at float64 round-off (1e-11, the strictest default of ``verify``, and without its precision watch,
    whose first use in a process costs 3 s of imports), then, for a model that computes in a coarser
    dtype somewhere, with ``verify``'s own tolerance for it."""
    if permgraph.verify(model, spec, inputs.args, inputs.kwargs, rtol=1e-11).ok:
        return True
    report = permgraph.verify(model, spec, inputs.args, inputs.kwargs)
    if not report.ok:
        log.info("ignoring a cached spec that no longer verifies: %s", report)
    return bool(report.ok)


class TransferEngine:
    """Transfers trajectories of one architecture on one dataset; several methods share its spec.

    ``model`` gives the architecture (it is used as a scratch module; its own weights are never
    read). ``spec`` defaults to ``permgraph.infer`` on ``example_inputs`` (default: a batch of two
    training samples, called as the model is called on every batch: :mod:`transfer.inputs`),
    inferred once. ``loss_fn(outputs, batch)`` must be a mean (default: cross-entropy).
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
        self._spec = spec
        self.param_keys = [n for n, _ in model.named_parameters(remove_duplicate=False)]
        self._pending: dict[str, float] = {}  # phases before the next run (start-up, data, spec): its entry reports them
        self._spec_key: str | None = None  # the cache key of a found or inferred spec (None: given, or not cacheable)

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
        key = self._spec_key = spec_key(self.model, inputs.key())
        local = out / ".state" / SPEC_FILE if out is not None and dist.is_main() else None
        user = spec_cache_file(key) if key is not None else None
        places = [p for p in (local, user) if p is not None]
        found = next(((p, s) for p in places if (s := load_spec(p, key, self.model)) is not None), None)
        if found and not _still_exact(self.model, found[1], inputs):
            found = None  # the key missed a change (a helper the forward calls lives in another file)
        spec = found[1] if found else infer_spec(self.model, inputs)
        # an output folder's copy may come from elsewhere: it serves that folder, never the user cache
        for place in places[: places.index(found[0]) if found else len(places)]:
            save_spec(place, key, spec)
        self._pending["spec"] = self._pending.get("spec", 0.0) + time.perf_counter() - t0
        return spec

    def run(
        self,
        method: str,
        source: Trajectory | str | os.PathLike,
        target_init: TargetInit,
        *,
        target: Trajectory | str | os.PathLike | None = None,
        out: str | os.PathLike | None = None,
        callback: Callback | None = None,
    ) -> dict:
        """Transfer ``source`` onto ``target_init`` (a state dict, or a run whose first checkpoint
        is the init) with ``method``; returns the method's entry of ``results.json``. ``target``:
        the real target run (Oracle). ``out``: where the transferred trajectory, ``results.json`` and
        the resume state go (None: nothing is written). ``callback(t, record)`` runs after each step."""
        started = time.perf_counter()
        cls = _method_class(method)
        src = self._source(source)
        theta2_0, init_desc = self._target_init(target_init)
        tgt = self._target_run(cls, target, theta2_0)
        setting = self._setting(cls.name, src, init_desc, theta2_0, tgt)
        if out is None:
            return self._run(cls, setting, (src, theta2_0, tgt), None, (callback, started))
        out_path = Path(out)
        inputs = {"source trajectory": src.path, "target run": tgt.path if tgt else None,
                  "target init": _path_of(target_init)}  # fmt: skip
        with contextlib.ExitStack() as held:

            def claim() -> None:
                check_output_folder(out_path, cls.name, inputs, replaced=self.options.write_trajectory)
                command = f"transfer run --method {cls.name}"
                held.enter_context(output_folder(out_path, "transfer", owned_by_transfer, command))
                _check_results_setting(out_path, setting)

            _agree(claim if dist.is_main() else None)
            return self._run(cls, setting, (src, theta2_0, tgt), out_path, (callback, started))

    def _run(self, cls: type[TransferMethod], setting: dict, inputs: tuple, out: Path | None, call: tuple) -> dict:
        src, theta2_0, tgt = inputs
        callback, started = call
        t_spec = time.perf_counter()
        spec = self._spec_for_run(out)
        spec_seconds = time.perf_counter() - t_spec
        store = _TimedStore(out / ".state" / cls.name) if out is not None and dist.is_main() else MemoryStore()
        ctx = _RunContext(
            spec=spec,
            options=self.options,
            gradients=_TimedGradients(self.model, self.data, self.options, loss_fn=self.loss_fn),
            source=SourcePoints(src, self.param_keys, self.options),
            theta2_0=theta2_0,
            store=store,
            target=tgt,
        )
        loop = _Loop(cls(ctx), setting, out)
        record = loop.run(callback)
        before, self._pending = self._pending, {}
        before["inputs"] = max(0.0, loop.ready_at - started - spec_seconds)
        # wall time of this method's share of the command: what the caller reported, a spec inferred
        # before this run, and the run itself
        outside = before.get("startup", 0.0) + before.get("data", 0.0) + max(0.0, before.get("spec", 0.0) - spec_seconds)
        return _Outputs(ctx, setting, record, out).write(before, started - outside)

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
    def _source(self, source: Trajectory | str | os.PathLike) -> Trajectory:
        src = open_trajectory(source, "source trajectory")
        if not src.complete and not self.options.allow_incomplete:
            last = src.steps[-1] if src.steps else 0
            raise TransferError(
                f"source trajectory {src.path} is incomplete (its training stopped at step {last}); finish it by "
                "re-running its training command, or allow it (allow_incomplete=True, --allow-incomplete)"
            )
        if len(src) < 2:
            raise TransferError(f"source trajectory {src.path} has {len(src)} checkpoint(s); it needs init and final")
        theta1_0 = src.init()
        _check_same_architecture(self.model.state_dict(), theta1_0, f"the source trajectory {src.path} (recorded model "
                                 f"{src.model!r})", self.model_name)  # fmt: skip
        _check_finite(theta1_0, "the source init")
        _check_finite(src.final(), "the source's final checkpoint")
        return src

    def _target_init(self, target_init: TargetInit) -> tuple[State, str]:
        if isinstance(target_init, Mapping):
            theta2_0, desc = {k: v.detach().cpu().clone() for k, v in target_init.items()}, "state_dict"
        else:
            run = open_trajectory(target_init, "target init")
            theta2_0, desc = run.init(), str(run.path)
        _check_same_architecture(self.model.state_dict(), theta2_0, f"the target init ({desc})", self.model_name)
        _check_finite(theta2_0, "the target init")
        return theta2_0, desc

    def _target_run(self, cls: type[TransferMethod], target: Any, theta2_0: State) -> Trajectory | None:
        if not cls.needs_target:
            return None
        if target is None:
            raise TransferError(f"{cls.name} needs the real target run: pass target= (CLI: --target RUN)")
        tgt = open_trajectory(target, "target run")
        _check_same_architecture(self.model.state_dict(), tgt.final(), f"the target run {tgt.path}", self.model_name)
        t_init = tgt.init()
        if any(not torch.equal(t_init[k], theta2_0[k]) for k in theta2_0 if torch.is_floating_point(theta2_0[k])):
            raise TransferError(
                f"the target run {tgt.path} did not start from the given target init; {cls.name} compares "
                "changes from the same init (pass --target-init the same run)"
            )
        return tgt

    def _setting(self, method: str, src: Trajectory, init_desc: str, theta2_0: State, tgt: Trajectory | None) -> dict:
        """Everything that determines a method's numbers; a resumed run must match it exactly."""
        return {
            "method": method,
            "model": src.model,
            "data": self.data.name,
            "source": str(src.path),
            "source_sha": trajectory_sha(src),
            "target_init": init_desc,
            "target_init_sha": state_sha(theta2_0),
            **self.options.setting(),
            "target": str(tgt.path) if tgt is not None else None,
            "target_sha": trajectory_sha(tgt) if tgt is not None else None,
        }


@contextlib.contextmanager
def transfer_output(out: str | os.PathLike, command: str = "transfer run"):
    """Hold ``out`` as a transfer output folder for the duration (claimed, locked: see
    :func:`transfer.files.output_folder`). Under torch.distributed only rank 0 holds it, and a refusal
    reaches every rank. Re-entrant: a command may hold it across several methods' runs."""
    with contextlib.ExitStack() as held:
        if dist.is_main():
            _agree(lambda: held.enter_context(output_folder(out, "transfer", owned_by_transfer, command)))
        else:
            _agree(None)
        yield Path(out)


def _agree(check: Callable[[], None] | None) -> None:
    """Run ``check`` on rank 0 and make every rank fail with its message when it fails, so a refusal
    never leaves the other ranks waiting in a collective (single process: just ``check()``)."""
    if dist.world_size() == 1:
        if check is not None:
            check()
        return
    message = None
    if dist.is_main() and check is not None:
        try:
            check()
        except ValueError as e:
            message = str(e)
    message = dist.broadcast_object(message)
    if message is not None:
        raise TransferError(message)


def _method_class(method: str) -> type[TransferMethod]:
    try:
        return get_method(method)
    except ValueError as e:
        raise TransferError(str(e)) from None


def _path_of(target_init: TargetInit) -> Path | None:
    if isinstance(target_init, Mapping):
        return None
    return target_init.path if isinstance(target_init, Trajectory) else Path(target_init)


def trajectory_sha(traj: Trajectory) -> str:
    """A run's identity by content: a hash of its checkpoints' sha256 (from the manifest, which
    every read checks against the files), so a run that moved on is never mistaken for the old one."""
    h = hashlib.sha256()
    for c in traj.checkpoints:
        h.update(f"{c['step']}:{c['sha256']};".encode())
    return h.hexdigest()[:16]


def shared_setting(setting: Mapping[str, Any]) -> dict:
    """The fields every method in one ``results.json`` must share."""
    return {k: v for k, v in setting.items() if k not in ("method", "target", "target_sha")}


def owned_by_transfer(name: str) -> bool:
    """Whether an entry of an output folder is one ``transfer run`` (or ``transfer finetune``) writes."""
    from transfer.methods import method_names

    return (
        name in ("results.json", "transfer.png", ".state", ".lock", MARKER)
        or name in method_names()
        or name.startswith(("finetune_", "."))
    )


def check_output_folder(out: Path, method: str, inputs: Mapping[str, Path | None], *, replaced: bool = True) -> None:
    """Before any work: ``out/<method>`` (replaced at the end, unless ``replaced`` is False: the
    trajectory is not written) holds only a transferred trajectory, and neither it nor ``out`` is
    one of the inputs."""
    folder = out / method
    refuse_inputs_inside(folder, dict(inputs))
    refuse_inputs_inside(out, dict(inputs))
    if replaced and folder.exists():
        foreign = sorted(p.name for p in folder.iterdir() if not _trajectory_file(p.name))
        if foreign or not (folder / "manifest.json").exists():
            shown = ", ".join(foreign[:5]) or "no manifest.json"
            raise FolderError(
                f"{folder} would be replaced, but it is not a transferred trajectory this tool wrote ({shown}); "
                "move it away or choose another output folder"
            )


def _trajectory_file(name: str) -> bool:
    return (
        name in ("manifest.json", PERMUTATIONS)
        or (name.startswith("ckpt_") and name.endswith(".safetensors"))
        or name.startswith(".")
    )


def load_permutations(folder: str | os.PathLike) -> list[dict[str, torch.Tensor]]:
    """The permutation of every step t = 0..T of a transferred trajectory (``OUT/<method>/``), as
    saved beside its checkpoints: ``[{group name: permutation}, ...]``."""
    path = Path(folder) / PERMUTATIONS
    if not path.exists():
        raise TransferError(f"{path} is missing: {folder} is not a transferred trajectory of this version")
    flat = load_file(str(path))
    steps: dict[int, dict[str, torch.Tensor]] = {}
    for key, perm in flat.items():
        t, group = key.split("/", 1)
        steps.setdefault(int(t[1:]), {})[group] = perm.long()
    return [steps[t] for t in sorted(steps)]


def _check_results_setting(out: Path, setting: Mapping[str, Any]) -> None:
    existing = load_results(out)
    if existing is not None and existing.get("setting") != shared_setting(setting):
        raise TransferError(
            f"{out / 'results.json'} holds results of another setting ({existing.get('setting')}); "
            "use another --out or delete it"
        )


class _Loop:
    """Steps 0..T of one method: resume, choose pi_t, evaluate, commit."""

    def __init__(self, method: TransferMethod, setting: dict, out: Path | None) -> None:
        self.method, self.ctx, self.setting, self.out = method, method.ctx, setting, out
        self.ready_at = time.perf_counter()  # when the first step starts (inputs and resume state read)

    def run(self, callback: Callback | None) -> dict:
        store = self.ctx.store
        record = dist.broadcast_object(store.load_record(self.setting) if dist.is_main() else None)
        fresh = record is None
        if record is None:
            record = _new_record(self.setting)
        else:
            log.info("resuming %s after step %d", self.setting["method"], record["done"])
        record["phases"] = _loop_phases(record.get("phases"))
        try:
            self._steps(record, callback)
        except (ValueError, FloatingPointError, TrajectoryError):
            # deterministic failures: a rerun would fail the same way, so leave nothing behind
            if fresh:
                store.discard()
                if self.out is not None:
                    _remove_state_if_alone(self.out / ".state")
            raise
        return record

    def _steps(self, record: dict, callback: Callback | None) -> None:
        ctx, T, done = self.ctx, self.ctx.options.T, record["done"]
        perms = {t: ctx.store.load_perm(t) for t in range(done + 1)} if dist.is_main() else {}
        perms = dist.broadcast_object(perms)
        if not dist.is_main():
            ctx.store.prime(perms)
        if done >= 0:
            ctx.lap_warm.update(ctx.store.load_warm(done))
        self.method.resume(done)
        show = ctx.options.progress and dist.is_main()
        bar = tqdm(total=T + 1, initial=done + 1, desc=self.setting["method"], disable=not show, leave=False)
        self.ready_at = time.perf_counter()
        for t in range(done + 1, T + 1):
            c0, t0, solve0 = _counters(ctx), time.perf_counter(), ctx.solve_seconds
            perm = self.method.start() if t == 0 else self.method.step(t, perms[t - 1])
            ctx.store.save_perm(t, perm)
            ctx.store.save_warm(t, ctx.lap_warm)
            perms[t] = perm
            step = time.perf_counter() - t0
            record["seconds"] += step
            c1, t1 = _counters(ctx), time.perf_counter()
            loss, acc = self._evaluate(t, ctx.theta2(perm, t))
            evaluation = time.perf_counter() - t1
            record["eval_seconds"] += evaluation
            _add_phases(record["phases"], (step, evaluation), (c0, c1, _counters(ctx)))
            _commit_step(record, t, T, loss, acc, ctx)
            c3 = _counters(ctx)
            ctx.store.commit(record)
            record["phases"]["state"] += _counters(ctx)[2] - c3[2]  # the commit's own time: in the next commit
            bar.update(1)
            bar.set_postfix(val_acc=f"{acc:.4f}", solve=f"{ctx.solve_seconds - solve0:.1f}s")
            if callback is not None:
                callback(t, dict(record))
        bar.close()

    def _evaluate(self, t: int, theta: State) -> tuple[float, float]:
        """Val (loss, acc) of step t after BatchNorm re-estimation; the re-estimated statistics go
        to the store so the saved trajectory reuses them instead of recomputing."""
        sg = self.ctx.gradients
        if sg.bn:
            theta = sg.reestimate_bn(theta)
            self.ctx.store.save_bn(t, {k: theta[k] for k in _bn_keys(self.ctx)})
        return sg.evaluate(theta, reestimate=False)


def _counters(ctx: TransferContext) -> tuple[float, float, float]:
    """Seconds so far in gradients, in solves and in writing resume files."""
    return getattr(ctx.gradients, "seconds", 0.0), ctx.solve_seconds, getattr(ctx.store, "seconds", 0.0)


def _add_phases(phases: dict, seconds: tuple[float, float], counters: tuple) -> None:
    """One step's time by phase: the method's step (gradients, solves, its resume files, and the
    rest: accumulating costs) and the evaluation (less the BatchNorm statistics it saves)."""
    step, evaluation = seconds
    (g0, s0, w0), (g1, s1, w1), (_, _, w2) = counters
    phases["gradients"] += g1 - g0
    phases["solves"] += s1 - s0
    phases["state"] += (w1 - w0) + (w2 - w1)
    phases["accumulate"] += max(0.0, step - (g1 - g0) - (s1 - s0) - (w1 - w0))
    phases["evaluation"] += max(0.0, evaluation - (w2 - w1))


def _loop_phases(saved: Any) -> dict[str, float]:
    """The step phases a resumed record carries (missing or unreadable ones start at 0: timings
    are reported, never relied on)."""
    saved = saved if isinstance(saved, dict) else {}
    return {k: float(v) if _is_seconds(v := saved.get(k)) else 0.0 for k in LOOP_PHASES}


def _is_seconds(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and x == x and 0 <= x < float("inf")


def _new_record(setting: Mapping[str, Any]) -> dict:
    return {
        "setting": dict(setting),
        "done": -1,
        "val_acc": [],
        "val_loss": [],
        "seconds": 0.0,
        "eval_seconds": 0.0,
        "lsa_calls": 0,
        "lsa_seconds": 0.0,
        "complete": False,
    }


def _commit_step(record: dict, t: int, T: int, loss: float, acc: float, ctx: TransferContext) -> None:
    record["val_loss"].append(loss)
    record["val_acc"].append(acc)
    record["lsa_calls"] += ctx.totals.lsa_calls
    record["lsa_seconds"] += ctx.totals.lsa_seconds
    record["lap_proofs"] = LapProofs.from_json(record.get("lap_proofs")).merge(ctx.totals.proofs).to_json()
    ctx.totals.lsa_calls, ctx.totals.lsa_seconds, ctx.totals.proofs = 0, 0.0, LapProofs()
    record["done"] = t
    record["complete"] = t == T


def _bn_keys(ctx: TransferContext) -> list[str]:
    sg = ctx.gradients
    prefixes = {name for name, m in sg.model.named_modules() if m in sg.bn}
    return [k for k in ctx.theta2_0 if k.rsplit(".", 1)[0] in prefixes and k not in ctx.param_keys]


def _remove_state_if_alone(path: Path) -> None:
    """Remove ``OUT/.state`` when it holds nothing but the cached spec (a fresh run that failed
    leaves no trace; the spec is only a cache)."""
    try:
        if {p.name for p in path.iterdir()} <= {SPEC_FILE}:
            (path / SPEC_FILE).unlink(missing_ok=True)
            path.rmdir()
    except OSError:
        pass


@dataclass
class _RunContext(TransferContext):
    """The context of one run: its matchers share ``lap_warm``, so each step's solve of a group starts
    from the previous step's (the auction from its prices: :class:`transfer.lap.LapWarm`). It is
    saved with every step and read back on resume, so a resumed run takes the uninterrupted run's
    path."""

    lap_warm: dict[str, LapWarm] = field(default_factory=dict)

    def new_matcher(self, pairs: PairSource | None = None) -> Matcher:
        matcher = super().new_matcher(pairs=pairs)
        if isinstance(matcher, Matcher):
            matcher.warm = self.lap_warm
        return matcher


class _TimedGradients(SyncedGradients):
    """:class:`SyncedGradients` that add up the seconds spent taking gradients (the "gradients" phase)."""

    seconds = 0.0

    def gradient(self, state: Mapping[str, torch.Tensor], k: int) -> dict[str, torch.Tensor]:
        t0 = time.perf_counter()
        try:
            return super().gradient(state, k)
        finally:
            self.seconds += time.perf_counter() - t0


class _TimedStore(RunStore):
    """A :class:`RunStore` that adds up the seconds spent writing resume files (the "state" phase)."""

    seconds = 0.0

    def _save(self, kind: str, t: int, tensors: Mapping[str, torch.Tensor]) -> None:
        t0 = time.perf_counter()
        try:
            super()._save(kind, t, tensors)
        finally:
            self.seconds += time.perf_counter() - t0

    def commit(self, record: Mapping[str, Any]) -> None:
        t0 = time.perf_counter()
        try:
            super().commit(record)
        finally:
            self.seconds += time.perf_counter() - t0


class _Outputs:
    """The transferred trajectory folder and the method's entry in ``results.json``."""

    def __init__(self, ctx: TransferContext, setting: dict, record: dict, out: Path | None) -> None:
        self.ctx, self.setting, self.record, self.out = ctx, setting, record, out

    def result(self) -> dict:
        rec, options = self.record, self.ctx.options
        acc = rec["val_acc"]
        result = {
            "t": list(range(options.T + 1)),
            "val_acc": acc,
            "val_loss": rec["val_loss"],
            "best_t": max(range(len(acc)), key=lambda i: (acc[i], -i)),
            "seconds": rec["seconds"],
            "eval_seconds": rec["eval_seconds"],
            "lsa_calls": rec["lsa_calls"],
            "lsa_seconds": rec["lsa_seconds"],
            "lap_proofs": LapProofs.from_json(rec.get("lap_proofs")).to_json(),
        }
        if options.linear:
            result["lambdas"] = schedule_lambdas(options.T, options.schedule)
        else:
            result["source_steps"] = self.ctx.source.steps()
        if self.setting["target"] is not None:
            result["target"] = self.setting["target"]
        result["world_size"] = dist.world_size()
        return result

    def write(self, before: Mapping[str, float] | None = None, started: float | None = None) -> dict:
        """Write the trajectory (unless ``options.write_trajectory`` is False) and the entry, whose
        ``phases`` are ``before`` (what preceded the steps), the steps' own and the writing, and whose
        ``wall_seconds`` runs from ``started`` (perf_counter) to now."""
        t0 = time.perf_counter()
        written = self.out is not None and dist.is_main() and self.ctx.options.write_trajectory
        if written:
            self._write_trajectory()
        result = self.result()
        phases = {**dict.fromkeys(PHASES, 0.0), **dict(before or {}), **self.record["phases"]}
        phases["writing"] = time.perf_counter() - t0
        result["phases"] = {k: round(phases[k], 3) for k in PHASES}
        if started is not None:
            wall = time.perf_counter() - started
            result["phases"]["other"] = round(max(0.0, wall - sum(phases[k] for k in PHASES)), 3)
            result["wall_seconds"] = round(wall, 3)
        result["trajectory"] = written
        if self.out is None or not dist.is_main():
            return result
        merge_result(self.out, shared_setting(self.setting), self.setting["method"], result)
        return result

    def saved_state(self, t: int) -> State:
        """theta_2^t as saved: transferred parameters, target buffers, re-estimated BN statistics."""
        ctx = self.ctx
        theta = ctx.theta2(ctx.store.load_perm(t), t)
        if ctx.gradients.bn:
            stats = ctx.store.load_bn(t)
            theta.update(stats if stats is not None else ctx.gradients.reestimate_bn(theta))
        return theta

    def _write_trajectory(self) -> None:
        method, T = self.setting["method"], self.ctx.options.T
        folder = self.out / method
        tmp = temporary_folder(self.out, f".{method}.")  # the umask's mode, not mkdtemp's 0700
        try:
            writer = TrajectoryWriter(tmp, model=self.setting["model"], data=self.setting["data"],
                                      seed=self.setting["seed"], config=self.setting)  # fmt: skip
            for t in range(T + 1):
                metrics = {"val_acc": self.record["val_acc"][t], "val_loss": self.record["val_loss"][t]}
                writer.save(self.saved_state(t), step=t, epoch=float(t), name=f"t{t}", metrics=metrics)
            perms = {f"t{t}/{g}": p for t in range(T + 1) for g, p in self.ctx.store.load_perm(t).items()}
            atomic_write_bytes(tmp / PERMUTATIONS, save_tensors({k: v.contiguous() for k, v in perms.items()}))
            writer.finish()
            _replace_folder(tmp, folder)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


def _replace_folder(new: Path, folder: Path) -> None:
    if folder.exists():
        old = folder.parent / f".{folder.name}.old"
        shutil.rmtree(old, ignore_errors=True)
        os.replace(folder, old)
        os.replace(new, folder)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(new, folder)


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

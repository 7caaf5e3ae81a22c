"""Learning-trajectory transfer: GMT, FGMT, Naive and Oracle (Chijiwa, ICLR 2024).

Every method returns, for t = 0..T, the transferred parameters

    theta_2^t = theta_2^0 + pi_t (theta_1^t - theta_1^0)

with ``pi_t`` from ``permgraph.apply`` (gather form) under the model's inferred PermSpec:

* ``naive``: pi = id.
* ``oracle``: pi = weight matching of the real target run's change against the source's change.
* ``gmt`` (Alg. 1): at step s, pairs (grad L(theta_1^{t-1}), grad L(theta_2^{t-1} under pi_{s-1}))
  for t = 1..s, target gradients recomputed under the latest permutation; pi_s solves all s pairs.
* ``fgmt`` (Alg. 2): one new pair per step; older pairs stay cached, never refreshed.

Gradient pair t always uses the minibatches of :class:`SyncedGradients` number t, so the source
gradients of GMT are the same at every step and are computed once (GMT then costs T source and
T(T+1)/2 - 1 target gradients instead of T(T+1)); the first target gradient, taken at theta_2^0,
does not depend on pi and is cached too.

Buffers are not transferred: they come from theta_2^0, and BatchNorm statistics are re-estimated
for every evaluation and every saved checkpoint.

Runs with ``out`` are resumable at step granularity: after each step the permutation (and, for
FGMT, the new gradient pair) go to ``out/.state/<method>/`` as safetensors, then ``state.json`` is
replaced atomically; a rerun continues after the last committed step and ends with the same numbers.
The transferred trajectory (``out/<method>/``) and ``out/results.json`` are written only at the end.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save
from torch import nn
from tqdm.auto import tqdm

import permgraph
from permgraph.apply import Permutation, apply, identity_permutation
from permgraph.spec import PermSpec
from transfer.gradients import LossFn, SyncedGradients
from transfer.matching import Matcher, permuted_distance, weight_matching
from transfer.trajectory import (
    LinearTrajectory,
    Trajectory,
    TrajectoryError,
    TrajectoryWriter,
    atomic_write_bytes,
    atomic_write_json,
    schedule_lambdas,
)

__all__ = [
    "METHODS",
    "TransferError",
    "TransferSetting",
    "run_transfer",
    "transferred_state",
    "align",
    "load_results",
    "weight_matching",
]

log = logging.getLogger(__name__)

METHODS = ("gmt", "fgmt", "naive", "oracle")
State = dict[str, torch.Tensor]
TargetInit = Mapping[str, torch.Tensor] | int | str | os.PathLike


class TransferError(ValueError):
    """Inputs that cannot be transferred (wrong architecture, missing target run, bad out folder)."""


@dataclass(frozen=True)
class TransferSetting:
    """Everything that determines a method's numbers; a resumed run must match it exactly."""

    method: str
    model: str
    data: str
    source: str
    target_init: str
    target_init_sha: str
    T: int
    schedule: str
    linear: bool
    grad_batches: int
    batch_size: int
    bn_batches: int
    seed: int
    restarts: int
    target: str | None = None

    def shared(self) -> dict[str, Any]:
        """The fields every method in one ``results.json`` must share."""
        d = asdict(self)
        for k in ("method", "target"):
            d.pop(k)
        return d


# ---------------------------------------------------------------------------------- helpers


def transferred_state(
    spec: PermSpec,
    perm: Permutation,
    theta2_0: Mapping[str, torch.Tensor],
    delta1: Mapping[str, torch.Tensor],
) -> State:
    """theta_2^0 + perm(delta1) on the keys of ``delta1`` (parameters); every other entry of
    ``theta2_0`` (buffers) is copied."""
    moved = apply(spec, perm, delta1)
    out = {k: v.clone() for k, v in theta2_0.items()}
    for k, d in moved.items():
        out[k] = theta2_0[k] + d.to(theta2_0[k].dtype)
    return out


def _sha(state: Mapping[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for k in sorted(state):
        h.update(k.encode())
        h.update(state[k].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _check_finite(state: Mapping[str, torch.Tensor], what: str) -> None:
    for k, v in state.items():
        if torch.is_floating_point(v) and not torch.isfinite(v).all():
            raise TransferError(f"{what} holds NaN/inf in {k!r}; it cannot be transferred")


def _check_same_architecture(expected: Mapping[str, torch.Tensor], got: Mapping[str, torch.Tensor], what: str) -> None:
    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected))
    if missing or extra:
        raise TransferError(
            f"{what} does not match the source's architecture: missing {missing[:5]}, "
            f"unexpected {extra[:5]}; pass a state of the same model id as the source trajectory"
        )
    for k, v in expected.items():
        if tuple(v.shape) != tuple(got[k].shape):
            raise TransferError(
                f"{what}: {k!r} has shape {tuple(got[k].shape)}, the source has {tuple(v.shape)} "
                "(another width or class count?)"
            )


def _resolve_data(data: Any) -> tuple[str, Any]:
    if isinstance(data, str):
        from zoo.data import load  # the one place transfer reaches into zoo: names for the CLI

        return data, load(data)
    for split in ("train", "val"):
        if not hasattr(data, split):
            raise TransferError(f"data must be a dataset name or have .train and .val (x, y) pairs; no .{split}")
    return getattr(data, "name", type(data).__name__), data


def _build_model(model_id: str, seed: int | None = None) -> nn.Module:
    from zoo.models import build  # model ids are zoo's vocabulary (see _resolve_data)

    if seed is not None:
        torch.manual_seed(seed)
    return build(model_id)


def _open(traj: Trajectory | str | os.PathLike, what: str) -> Trajectory:
    if isinstance(traj, Trajectory):
        return traj
    try:
        return Trajectory(traj)
    except TrajectoryError as e:
        raise TransferError(f"{what}: {e}") from e


# ---------------------------------------------------------------------------------- the run


class _Run:
    """One method's transfer: resolved inputs, resume state, and the loop over steps."""

    def __init__(
        self,
        setting: TransferSetting,
        spec: PermSpec,
        sg: SyncedGradients,
        src: Trajectory,
        theta2_0: State,
        param_keys: list[str],
        val: tuple[torch.Tensor, torch.Tensor],
        target: Trajectory | None,
        out: Path | None,
        eval_batch_size: int,
    ) -> None:
        self.setting, self.spec, self.sg, self.src = setting, spec, sg, src
        self.theta2_0, self.param_keys, self.val = theta2_0, param_keys, val
        self.target, self.out, self.eval_batch_size = target, out, eval_batch_size
        T = setting.T
        theta1_0 = src.init()
        self._theta1_0 = {k: theta1_0[k] for k in param_keys}
        self._source_buffers = {k: v for k, v in theta1_0.items() if k not in self._theta1_0}
        if setting.linear:
            final = src.final()
            self._linear = LinearTrajectory(self._theta1_0, {k: final[k] for k in param_keys}, T, setting.schedule)
            self.index = None
        else:
            n = len(src)
            if T > n - 1:
                raise TransferError(f"T={T} but the source trajectory has only {n} checkpoints (T <= {n - 1})")
            self.index = [round(i * (n - 1) / T) for i in range(T + 1)]
        self.state_dir = out / ".state" / setting.method if out is not None else None
        self._bn_cache: dict[int, State] = {}

    # -- source trajectory
    def theta1(self, t: int) -> State:
        if self.index is None:
            return self._linear.at(t)
        full = self.src.load(self.index[t])
        return {k: full[k] for k in self.param_keys}

    def delta1(self, t: int) -> State:
        th = self.theta1(t)
        return {k: th[k] - self._theta1_0[k] for k in self.param_keys}

    def theta2(self, perm: Permutation, t: int) -> State:
        return transferred_state(self.spec, perm, self.theta2_0, self.delta1(t))

    def source_state(self, t: int) -> State:
        """A full state dict for the source's gradient at t (buffers from the source init)."""
        if self.index is None:
            return {**self._source_buffers, **self.theta1(t)}
        return self.src.load(self.index[t])

    # -- resume state
    def _load_state(self) -> dict | None:
        if self.state_dir is None or not (self.state_dir / "state.json").exists():
            return None
        state = json.loads((self.state_dir / "state.json").read_text())
        if state.get("setting") != asdict(self.setting):
            raise TransferError(
                f"{self.state_dir} holds an unfinished {self.setting.method} run with another setting "
                f"({state.get('setting')}); rerun with the same arguments, or use another --out / delete it"
            )
        return state

    def _perm_file(self, s: int) -> Path:
        assert self.state_dir is not None
        return self.state_dir / f"perm_{s:04d}.safetensors"

    def _pair_file(self, s: int) -> Path:
        assert self.state_dir is not None
        return self.state_dir / f"pair_{s:04d}.safetensors"

    def _save_tensors(self, path: Path, tensors: Mapping[str, torch.Tensor]) -> None:
        atomic_write_bytes(path, save({k: v.contiguous() for k, v in tensors.items()}))

    def _commit(self, record: dict) -> None:
        if self.state_dir is not None:
            atomic_write_json(self.state_dir / "state.json", record)

    def _perm_of(self, s: int) -> Permutation:
        return {k: v.long() for k, v in load_file(str(self._perm_file(s))).items()}

    # -- evaluation
    def evaluate(self, t: int, theta: State) -> tuple[float, float]:
        """Val (loss, acc) of step t after BN re-estimation; the re-estimated statistics are kept
        in the state folder so the saved trajectory reuses them instead of recomputing."""
        if self.sg.bn:
            theta = self.sg.reestimate_bn(theta)
            if self.state_dir is not None:
                self._save_tensors(self._bn_file(t), {k: theta[k] for k in self._bn_keys})
            else:
                self._bn_cache[t] = {k: theta[k] for k in self._bn_keys}
        return self.sg.evaluate(theta, *self.val, batch_size=self.eval_batch_size, reestimate=False)

    def saved_state(self, t: int) -> State:
        """theta_2^t as saved: transferred parameters, target buffers, re-estimated BN statistics."""
        theta = self.theta2(self.perm(t), t)
        if self.sg.bn:
            stats = self._bn_cache.get(t)
            if stats is None:
                path = self._bn_file(t) if self.state_dir is not None else None
                stats = load_file(str(path)) if path is not None and path.exists() else None
            theta.update(stats if stats is not None else self.sg.reestimate_bn(theta))
        return theta

    @property
    def _bn_keys(self) -> list[str]:
        prefixes = {name for name, m in self.sg.model.named_modules() if m in self.sg.bn}
        return [k for k in self.theta2_0 if k.rsplit(".", 1)[0] in prefixes and k not in self.param_keys]

    def _bn_file(self, t: int) -> Path:
        assert self.state_dir is not None
        return self.state_dir / f"bn_{t:04d}.safetensors"

    # -- main loop
    def run(self, progress: bool, callback: Callable[[int, dict], None] | None) -> dict:
        s = self.setting
        record = self._load_state()
        fresh = record is None
        if record is None:
            record = {
                "setting": asdict(s),
                "done": -1,
                "val_acc": [],
                "val_loss": [],
                "seconds": 0.0,
                "eval_seconds": 0.0,
                "lsa_calls": 0,
                "lsa_seconds": 0.0,
                "complete": False,
            }
        else:
            log.info("resuming %s after step %d from %s", s.method, record["done"], self.state_dir)
        created = [p for p in (self.out, self.state_dir.parent) if not p.exists()] if self.state_dir else []
        if self.state_dir is not None:
            self.state_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._loop(record, progress, callback)
        except (ValueError, FloatingPointError, TrajectoryError):
            # deterministic failures: a rerun would fail the same way, so leave nothing behind
            if fresh and self.state_dir is not None:
                shutil.rmtree(self.state_dir, ignore_errors=True)
                for folder in reversed(created):  # only folders this call made, innermost first
                    _remove_empty(folder)
            raise
        return record

    def _loop(self, record: dict, progress: bool, callback: Callable[[int, dict], None] | None) -> None:
        method, T = self.setting.method, self.setting.T
        self._perms: dict[int, Permutation] = {}
        bar = tqdm(total=T + 1, initial=record["done"] + 1, desc=method, disable=not progress, leave=False)
        # --- restore
        for t in range(record["done"] + 1):
            if self.state_dir is not None and self._perm_file(t).exists():
                self._perms[t] = self._perm_of(t)
        if method in ("naive", "oracle"):
            if 0 not in self._perms:
                t0 = time.perf_counter()
                self._perms[0] = self._fixed(method, record)
                record["seconds"] += time.perf_counter() - t0
                self._store_perm(0, self._perms[0])
        else:
            self._perms.setdefault(0, identity_permutation(self.spec))
        matcher = Matcher(self.spec) if method == "fgmt" else None
        if matcher is not None:
            for t in range(1, record["done"] + 1):
                pair = load_file(str(self._pair_file(t)))
                matcher.add(_split_pair(pair, "target/"), _split_pair(pair, "source/"))
        src_grads: dict[int, State] = {}
        g2_first: State | None = None
        for t in range(record["done"] + 1, T + 1):
            t0 = time.perf_counter()
            if method in ("naive", "oracle"):
                perm = self._perms[0]
            elif t == 0:
                perm = self._perms[0]
            else:
                prev = self._perms[t - 1]
                if method == "fgmt":
                    assert matcher is not None
                    g1 = self.sg.gradient(self.source_state(t - 1), k=t)
                    g2 = self.sg.gradient(self.theta2(prev, t - 1), k=t)
                    if self.state_dir is not None:
                        self._save_tensors(self._pair_file(t), _join_pair(g2, g1, self.spec))
                    matcher.add(g2, g1)
                    m = matcher
                else:
                    m = Matcher(self.spec)
                    for j in range(1, t + 1):
                        if j not in src_grads:
                            src_grads[j] = self.sg.gradient(self.source_state(j - 1), k=j)
                        if j == 1:
                            if g2_first is None:
                                g2_first = self.sg.gradient(dict(self.theta2_0), k=1)
                            g2 = g2_first
                        else:
                            g2 = self.sg.gradient(self.theta2(prev, j - 1), k=j)
                        m.add(g2, src_grads[j])
                perm = m.solve(init=[prev, "sorted"], seed=self.setting.seed + t, restarts=self.setting.restarts)
                record["lsa_calls"] += m.stats.lsa_calls
                record["lsa_seconds"] += m.stats.lsa_seconds
                self._perms[t] = perm
                self._store_perm(t, perm)
            record["seconds"] += time.perf_counter() - t0
            t1 = time.perf_counter()
            loss, acc = self.evaluate(t, self.theta2(perm, t))
            record["eval_seconds"] += time.perf_counter() - t1
            record["val_loss"].append(loss)
            record["val_acc"].append(acc)
            record["done"] = t
            record["complete"] = t == T
            self._commit(record)
            bar.update(1)
            bar.set_postfix(val_acc=f"{acc:.4f}")
            if callback is not None:
                callback(t, dict(record))
        bar.close()

    def _store_perm(self, t: int, perm: Permutation) -> None:
        if self.state_dir is not None:
            self._save_tensors(self._perm_file(t), perm)

    def _fixed(self, method: str, record: dict) -> Permutation:
        """Naive: the identity. Oracle: weight matching of the target run's change (theta_2^T -
        theta_2^0) against the source's (theta_1^T - theta_1^0), one pair."""
        if method == "naive":
            return identity_permutation(self.spec)
        assert self.target is not None
        t_init, t_final = self.target.init(), self.target.final()
        d2 = {k: t_final[k] - t_init[k] for k in self.param_keys}
        m = Matcher(self.spec).add(d2, self.delta1(self.setting.T))
        perm = m.solve(init=[None, "sorted"], seed=self.setting.seed, restarts=self.setting.restarts)
        record["lsa_calls"] += m.stats.lsa_calls
        record["lsa_seconds"] += m.stats.lsa_seconds
        return perm

    def perm(self, t: int) -> Permutation:
        if self.setting.method in ("naive", "oracle"):
            return self._perms[0]
        return self._perms[t]

    def write_outputs(self, record: dict) -> dict:
        """The transferred trajectory folder and this method's entry in results.json."""
        s = self.setting
        acc = record["val_acc"]
        best_t = max(range(len(acc)), key=lambda i: (acc[i], -i))
        result = {
            "t": list(range(s.T + 1)),
            "val_acc": acc,
            "val_loss": record["val_loss"],
            "best_t": best_t,
            "seconds": record["seconds"],
            "eval_seconds": record["eval_seconds"],
            "lsa_calls": record["lsa_calls"],
            "lsa_seconds": record["lsa_seconds"],
        }
        if s.linear:
            result["lambdas"] = schedule_lambdas(s.T, s.schedule)
        else:
            result["source_steps"] = [self.src.steps[i] for i in self.index or []]
        if s.target is not None:
            result["target"] = s.target
        if self.out is None:
            return result
        folder = self.out / s.method
        tmp = Path(tempfile.mkdtemp(prefix=f".{s.method}.", dir=self.out))
        try:
            writer = TrajectoryWriter(tmp, model=s.model, data=s.data, seed=s.seed, config=asdict(s))
            for t in range(s.T + 1):
                theta = self.saved_state(t)
                writer.save(
                    theta,
                    step=t,
                    epoch=float(t),
                    name=f"t{t}",
                    metrics={"val_acc": acc[t], "val_loss": record["val_loss"][t]},
                )
            writer.finish()
            if folder.exists():
                old = self.out / f".{s.method}.old"
                shutil.rmtree(old, ignore_errors=True)
                os.replace(folder, old)
                os.replace(tmp, folder)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, folder)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        results = load_results(self.out) or {"setting": s.shared(), "methods": {}}
        if results.get("setting") != s.shared():
            raise TransferError(f"{self.out / 'results.json'} holds results of another setting; use another --out")
        results["methods"][s.method] = result
        atomic_write_json(self.out / "results.json", results)
        return result


def _remove_empty(path: Path) -> None:
    try:
        path.rmdir()
    except OSError:
        pass


def _join_pair(target: Mapping[str, torch.Tensor], source: Mapping[str, torch.Tensor], spec: PermSpec) -> State:
    touched = set(spec.members_by_param())
    out = {f"target/{k}": v for k, v in target.items() if k in touched}
    out.update({f"source/{k}": v for k, v in source.items() if k in touched})
    return out


def _split_pair(pair: Mapping[str, torch.Tensor], prefix: str) -> State:
    return {k[len(prefix) :]: v for k, v in pair.items() if k.startswith(prefix)}


def load_results(out: str | os.PathLike) -> dict | None:
    """The ``results.json`` of an output folder, or None if there is none yet."""
    path = Path(out) / "results.json"
    if not path.exists():
        return None
    return json.loads(path.read_text())


def run_transfer(
    method: str,
    source: Trajectory | str | os.PathLike,
    target_init: TargetInit,
    data: Any,
    *,
    T: int = 5,
    schedule: str = "uniform",
    linear: bool = True,
    grad_batches: int = 20,
    batch_size: int = 128,
    bn_batches: int = 20,
    seed: int = 0,
    restarts: int = 0,
    target: Trajectory | str | os.PathLike | None = None,
    out: str | os.PathLike | None = None,
    model: nn.Module | None = None,
    spec: PermSpec | None = None,
    loss_fn: LossFn | None = None,
    eval_batch_size: int = 1000,
    progress: bool = True,
    callback: Callable[[int, dict], None] | None = None,
    device: str | torch.device = "cpu",
) -> dict:
    """Transfer ``source``'s trajectory onto ``target_init`` with ``method``; returns the method's
    entry of ``results.json`` (``t``, ``val_acc``, ``val_loss``, ``best_t``, ``seconds`` ...).

    ``source``: a trajectory folder (or :class:`Trajectory`). ``target_init``: a state dict, a run
    folder (its first checkpoint), or an int seed (``torch.manual_seed(seed)`` then building the
    source's model id). ``data``: a ``zoo.data`` name or an object with ``.train``/``.val`` (x, y).
    ``linear``: the paper's linear trajectory from the first and last checkpoints with ``schedule``
    (uniform | cosine); else the recorded checkpoints, T of them evenly spaced. ``target``: the real
    target run, needed by ``oracle``. ``out``: where to write ``<method>/`` and ``results.json`` and
    keep resume state (None: nothing written). ``callback(t, record)`` runs after each committed step.

    Defaults: 20 minibatches of 128 per gradient, where the paper's MNIST setting uses 1: the
    official code measured here gained 10 points at t=1 from it for seconds of compute (paper.md §6).
    """
    if method not in METHODS:
        raise TransferError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if isinstance(T, bool) or not isinstance(T, int) or T < 1:
        raise TransferError(f"T must be an int >= 1, got {T!r}")
    if schedule not in ("uniform", "cosine"):
        raise TransferError(f"unknown schedule {schedule!r}; use uniform or cosine")
    src = _open(source, "source trajectory")
    if len(src) < 2:
        raise TransferError(f"source trajectory {src.path} has {len(src)} checkpoint(s); it needs init and final")
    data_name, splits = _resolve_data(data)
    if model is None:
        model = _build_model(src.model)
    ref = model.state_dict()
    theta1_0 = src.init()
    _check_same_architecture(ref, theta1_0, f"source trajectory {src.path} (model {src.model!r})")
    _check_finite(theta1_0, "the source init")
    _check_finite(src.final(), "the source's final checkpoint")
    # target init
    if isinstance(target_init, Mapping):
        theta2_0, init_desc = {k: v.detach().cpu().clone() for k, v in target_init.items()}, "state_dict"
    elif isinstance(target_init, int) and not isinstance(target_init, bool):
        theta2_0 = _build_model(src.model, seed=target_init).state_dict()
        init_desc = f"seed:{target_init}"
    else:
        run = _open(target_init, "target init")
        theta2_0, init_desc = run.init(), str(run.path)
    _check_same_architecture(ref, theta2_0, "the target init")
    _check_finite(theta2_0, "the target init")
    tgt = None
    if method == "oracle":
        if target is None:
            raise TransferError("oracle needs the real target run: pass target= (CLI: --target RUN)")
        tgt = _open(target, "target run")
        _check_same_architecture(ref, tgt.final(), f"target run {tgt.path}")
        t_init = tgt.init()
        if any(not torch.equal(t_init[k], theta2_0[k]) for k in theta2_0 if torch.is_floating_point(theta2_0[k])):
            raise TransferError(
                f"the target run {tgt.path} did not start from the given target init; oracle compares "
                "changes from the same init (pass --target-init the same run)"
            )
    if spec is None:
        example = (splits.train[0][:2],)
        spec = permgraph.infer(model, example)
    param_keys = [n for n, _ in model.named_parameters(remove_duplicate=False)]
    setting = TransferSetting(
        method=method,
        model=src.model,
        data=data_name,
        source=str(src.path),
        target_init=init_desc,
        target_init_sha=_sha(theta2_0),
        T=T,
        schedule=schedule,
        linear=linear,
        grad_batches=grad_batches,
        batch_size=batch_size,
        bn_batches=bn_batches,
        seed=seed,
        restarts=restarts,
        target=str(tgt.path) if tgt is not None else None,
    )
    out_path = Path(out) if out is not None else None
    if out_path is not None:
        existing = load_results(out_path)
        if existing is not None and existing.get("setting") != setting.shared():
            raise TransferError(
                f"{out_path / 'results.json'} holds results of another setting ({existing.get('setting')}); "
                "use another --out or delete it"
            )
    x_train, y_train = splits.train
    sg = SyncedGradients(
        model,
        x_train,
        y_train,
        grad_batches=grad_batches,
        batch_size=batch_size,
        bn_batches=bn_batches,
        seed=seed,
        loss_fn=loss_fn,
        device=device,
    )
    run = _Run(setting, spec, sg, src, theta2_0, param_keys, splits.val, tgt, out_path, eval_batch_size)
    record = run.run(progress, callback)
    return run.write_outputs(record)


def align(
    a: Trajectory | str | os.PathLike,
    b: Trajectory | str | os.PathLike,
    *,
    model: nn.Module | None = None,
    spec: PermSpec | None = None,
    seed: int = 0,
    restarts: int = 0,
) -> dict:
    """Git Re-Basin weight matching of run ``b``'s final weights onto run ``a``'s: the permutation,
    its objective, and the L2 distance before and after (``transfer match A B``)."""
    ta, tb = _open(a, "run A"), _open(b, "run B")
    if ta.model != tb.model:
        raise TransferError(f"run A is a {ta.model!r}, run B a {tb.model!r}: weight matching needs one architecture")
    sa, sb = ta.final(), tb.final()
    if model is None:
        model = _build_model(ta.model)
    _check_same_architecture(model.state_dict(), sa, f"run {ta.path}")
    _check_same_architecture(model.state_dict(), sb, f"run {tb.path}")
    if spec is None:
        from zoo.models import example_inputs

        spec = permgraph.infer(model, example_inputs(ta.model))
    t0 = time.perf_counter()
    m = Matcher(spec).add(sa, sb)
    perm = m.solve(init=[None, "sorted"], seed=seed, restarts=restarts)
    seconds = time.perf_counter() - t0
    ident = identity_permutation(spec)
    return {
        "perm": perm,
        "objective": m.stats.objective,
        "distance_before": permuted_distance(spec, ident, sa, sb),
        "distance_after": permuted_distance(spec, perm, sa, sb),
        "moved_units": {g: int((p != torch.arange(len(p))).sum()) for g, p in perm.items()},
        "lsa_calls": m.stats.lsa_calls,
        "seconds": seconds,
        "spec": spec,
    }

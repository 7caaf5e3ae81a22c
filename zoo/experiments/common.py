"""What every experiment shares: configs, data views, cached runs, transfers, fine-tuning, outputs.

An experiment is a function ``run(ctx) -> dict`` over a :class:`Context`. The context carries the
merged config (``configs/NAME.toml``, with its ``[tiny]`` table merged on top under ``--tiny``),
the folder for its training runs (``runs/experiments/NAME``) and the folder for what it publishes
(``docs/results``). Every expensive piece (a training run, a transfer, a fine-tuning) is stored in a
folder named after its settings and reused when the experiment is run again, so a rerun after an
interruption, or after editing only the plots, costs seconds.
"""

from __future__ import annotations

import functools
import json
import math
import os
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from transfer.engine import TransferEngine
from transfer.evaluation import evaluate, logits_of
from transfer.files import atomic_write_bytes, atomic_write_json
from transfer.options import TransferOptions, options_from
from transfer.trajectory import Trajectory
from zoo.data import DataSplits, load
from zoo.errors import ZooError
from zoo.models import build, canonical_id, parse_model_id
from zoo.train import TrainControl, TrainRecipe, train

__all__ = [
    "CONFIG_DIR",
    "Context",
    "load_config",
    "setting_from",
    "deep_merge",
    "get_data",
    "model_for",
    "ensure_run",
    "run_folder",
    "transfer_methods",
    "train_from",
    "write_json",
    "write_text",
    "save_figure",
    "md_table",
    "pct",
    "eval_state",
    "predict_probs",
]

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"


# ---------------------------------------------------------------------------------- configs


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``over`` merged in; nested tables merge key by key, everything else is replaced."""
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def _read_config_file(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise ZooError(f"config file {path} does not exist; pass --config PATH to a .toml or .json file")
    if path.suffix == ".json":
        return json.loads(path.read_text())
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ModuleNotFoundError as e:
            raise ZooError(f"reading {path} needs Python >= 3.11 or `pip install tomli`") from e
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ZooError(f"{path} is not valid TOML: {e}") from e


def load_config(name: str, path: str | os.PathLike | None = None, tiny: bool = False) -> dict[str, Any]:
    """The config of experiment ``name``: ``path`` or ``configs/NAME.toml``; with ``tiny``, its
    ``[tiny]`` table merged over the rest (the seconds-long version the tests run)."""
    cfg = _read_config_file(Path(path) if path is not None else CONFIG_DIR / f"{name}.toml")
    small = cfg.pop("tiny", {})
    return deep_merge(cfg, small) if tiny else cfg


def setting_from(name: str, tiny: bool = False, schedule: str | None = None) -> dict[str, Any]:
    """Model, data, seeds, training and transfer settings of experiment ``name`` (its config file),
    for experiments that build on another's runs: asking for the same settings finds the same
    runs and transfers in the pool. ``schedule`` overrides the transfer schedule."""
    cfg = load_config(name, tiny=tiny)
    seeds = cfg["seeds"][0] if isinstance(cfg["seeds"][0], list) else cfg["seeds"]
    transfer = dict(cfg["transfer"])
    transfer["schedule"] = schedule or transfer.get("schedule") or cfg.get("schedules", ["uniform"])[0]
    return {
        "from": name, "model": cfg["model"], "data": cfg["data"], "subset": cfg.get("subset"),
        "val_subset": cfg.get("val_subset"), "seeds": list(seeds), "train": dict(cfg["train"]),
        "transfer": transfer, "finetune": dict(cfg.get("finetune", {})),
    }  # fmt: skip


# ---------------------------------------------------------------------------------- context


@dataclass
class Context:
    """One experiment's run: its config and where it reads and writes."""

    name: str
    config: dict[str, Any]
    runs: Path
    docs: Path
    pool: Path = Path("runs/experiments/_runs")
    tiny: bool = False
    progress: bool = True
    command: str = ""
    started: float = field(default_factory=time.perf_counter)

    def say(self, msg: str) -> None:
        """Progress for the person running the experiment (a CLI: printed, with elapsed time)."""
        print(f"[{self.name} {time.perf_counter() - self.started:6.0f}s] {msg}", flush=True)

    def out(self, suffix: str) -> Path:
        """A published file: ``docs/results/NAME<suffix>``."""
        self.docs.mkdir(parents=True, exist_ok=True)
        return self.docs / f"{self.name}{suffix}"


# ---------------------------------------------------------------------------------- data


@functools.lru_cache(maxsize=8)
def _load_cached(name: str, options: tuple) -> DataSplits:
    return load(name, **dict(options))


def _take(pair: tuple[torch.Tensor, torch.Tensor], n: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    return pair if n is None else (pair[0][:n], pair[1][:n])


def _keep_labels(pair, labels: Sequence[int] | None):
    if labels is None:
        return pair
    mask = torch.isin(pair[1], torch.tensor(list(labels)))
    return pair[0][mask], pair[1][mask]


def get_data(
    name: str,
    *,
    subset: int | None = None,
    val_subset: int | None = None,
    labels: Sequence[int] | None = None,
    **options: Any,
) -> DataSplits:
    """``zoo.data.load(name)`` (loaded once per process), restricted to ``labels`` (a task of a
    dataset, e.g. digits 0-4; labels keep their numbers), then to the first ``subset`` training and
    ``val_subset`` validation samples. The view's name records the restriction, so runs trained on
    different views never share a folder."""
    base = _load_cached(name, tuple(sorted(options.items())))
    if labels is None and subset is None and val_subset is None:
        return base
    tag = base.name
    if labels is not None:
        tag += "[" + ",".join(str(i) for i in labels) + "]"
    train_, val_, test_ = (_keep_labels(p, labels) for p in (base.train, base.val, base.test))
    train_, val_ = _take(train_, subset), _take(val_, val_subset)
    if subset is not None:
        tag += f"/n{len(train_[1])}"
    if val_subset is not None:
        tag += f"/v{len(val_[1])}"
    return DataSplits(
        tag, train_, val_, test_, base.num_classes, base.input_shape, base.mean, base.std, base.augment,
        base.source,
    )  # fmt: skip


def model_for(model: str, data: DataSplits) -> str:
    """The model id with the data's input size and class count filled in where the model takes them
    (``in_features`` of an MLP, ``in_channels`` of a convnet), so one config runs on any dataset."""
    source, name, kwargs = parse_model_id(model)
    over: dict[str, Any] = {}
    shape = tuple(data.input_shape)
    if name == "mlp2":
        over["in_features"] = int(math.prod(shape))
        over["num_classes"] = data.num_classes
    elif name in ("conv8", "resnet20", "resnet18", "vgg16") and len(shape) == 3:
        over["in_channels"] = shape[0]
        over["num_classes"] = data.num_classes
    elif name == "vit_tiny" and len(shape) == 3:
        over.update(in_channels=shape[0], image_size=shape[1], num_classes=data.num_classes)
    elif name == "gpt_tiny" and len(shape) == 1:
        over.update(vocab_size=data.num_classes, block_size=shape[0])
    defaults = _defaults(source, name)
    kwargs.update({k: v for k, v in over.items() if k not in kwargs})
    kept = {k: v for k, v in kwargs.items() if k not in defaults or defaults[k] != v or isinstance(v, bool)}
    return canonical_id(f"{source}:{name}", **kept)


def _defaults(source: str, name: str) -> dict[str, Any]:
    """A factory's default arguments: ids keep only what differs from them, so one model has one id
    (and a run recorded by ``zoo train --model mlp2`` is recognised as the same run as width=4096)."""
    import importlib
    import inspect

    from zoo.models import ZOO

    if source == "zoo":
        factory = ZOO.get(name)
    elif source in ("torchvision", "timm", "hf"):
        factory = None
    else:
        factory = getattr(importlib.import_module(source), name, None)
    if factory is None:
        return {}
    params = inspect.signature(factory).parameters.values()
    return {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}


# ---------------------------------------------------------------------------------- runs


def _key(*parts: Any) -> str:
    """A short stable hash of settings: folder names that change whenever a setting does."""
    import hashlib

    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def run_folder(ctx: Context, model: str, data: DataSplits, seed: int, train_kw: Mapping[str, Any]) -> Path:
    """Where the run of (model, data, recipe, seed) lives in the shared pool ``runs/experiments/_runs``:
    every experiment that asks for the same run gets the same folder, so it is trained once."""
    _, name, _ = parse_model_id(model)
    slug = "".join(c if c.isalnum() else "-" for c in data.name).strip("-")
    return ctx.pool / f"{name}_{slug}_{_key(model, data.name, dict(train_kw))}_s{seed}"


def ensure_run(
    ctx: Context,
    model: str,
    data: DataSplits,
    *,
    seed: int,
    what: str = "",
    out: Path | None = None,
    **train_kw: Any,
) -> Trajectory:
    """A complete training run (``zoo.train.train``): reused when it is there, resumed when it was
    interrupted, trained otherwise. ``out`` defaults to the run's folder in the shared pool."""
    out = out if out is not None else run_folder(ctx, model, data, seed, train_kw)
    t0 = time.perf_counter()
    done = (out / "manifest.json").exists() and Trajectory(out).complete
    if not done:
        ctx.say(f"training {what or out.name}: {model} on {data.name}, seed {seed}, {train_kw} -> {out}")
    recipe = TrainRecipe.from_mapping(train_kw, "the [train] table")
    traj = train(model, data, recipe, seed=seed, out=out, control=TrainControl(progress=ctx.progress and not done))
    acc = traj.metrics("val_acc")[-1]
    verb = "reused" if done else "trained"
    ctx.say(f"{verb} {what or out.name}: val acc {pct(acc)} ({time.perf_counter() - t0:.0f} s)")
    return traj


def transfer_methods(
    ctx: Context,
    methods: Iterable[str],
    source: Trajectory,
    target: Trajectory | None,
    data: DataSplits,
    out: Path | None = None,
    *,
    target_init: Any = None,
    **kw: Any,
) -> dict[str, dict]:
    """``run_transfer`` for each method into ``out`` (resumable; a finished method is read back
    from ``out/results.json`` without recomputing). ``target`` is the real target run: its init is
    the target init unless ``target_init`` is given, and it is Oracle's reference. ``out`` defaults
    to a folder of the shared pool named after the inputs, so experiments share transfers too;
    each method's transferred trajectory is ``out/<method>/``."""
    results: dict[str, dict] = {}
    if out is None:
        init_key = str(target_init.path) if isinstance(target_init, Trajectory) else target_init
        target_key = str(target.path) if target else None
        out = ctx.pool / f"transfer_{_key(str(source.path), target_key, init_key, data.name, kw)}"
    existing = _read_json(out / "results.json")
    init = target_init if target_init is not None else target
    options = options_from(TransferOptions, {**kw, "progress": ctx.progress}, "the [transfer] table")
    engine = TransferEngine(build(source.model), data, options)
    for m in methods:
        prev = (existing or {}).get("methods", {}).get(m)
        same = prev is not None and _same_transfer(existing["setting"], source, init, data, kw)
        if same and len(prev["t"]) == kw.get("T", 5) + 1:
            results[m] = prev
            continue
        ctx.say(f"transfer {m}: T={kw.get('T', 5)}, {kw.get('schedule', 'uniform')} schedule -> {out}")
        results[m] = engine.run(m, source, init, target=target if m == "oracle" else None, out=out)
        accs = " ".join(f"{100 * a:5.1f}" for a in results[m]["val_acc"])
        ctx.say(f"  {m:6s} val acc t=0..: {accs}  ({results[m]['seconds']:.0f} s)")
    for m in results:
        results[m] = {**results[m], "trajectory": str(out / m)}
    return results


def _same_transfer(
    setting: Mapping[str, Any], source: Trajectory, init: Any, data: DataSplits, kw: Mapping[str, Any]
) -> bool:
    """Whether a stored results.json was made with these inputs (``run_transfer`` would refuse a
    different setting in the same folder anyway; this only decides whether to skip the call)."""
    if isinstance(init, Trajectory):
        init_desc = str(init.path)
    elif isinstance(init, int):
        init_desc = f"seed:{init}"
    else:
        return False
    keys = ("T", "schedule", "linear", "grad_batches", "batch_size", "seed")
    return (
        setting.get("source") == str(source.path)
        and setting.get("target_init") == init_desc
        and setting.get("data") == data.name
        and all(setting.get(k) == kw[k] for k in keys if k in kw)
    )


def _read_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


# ---------------------------------------------------------------------------------- training from a state


def train_from(
    ctx: Context,
    state: Mapping[str, torch.Tensor],
    model: str,
    data: DataSplits,
    out: Path,
    *,
    seed: int = 0,
    what: str = "",
    **recipe: Any,
) -> Trajectory:
    """The one training loop (``zoo.train``) from a given state: the same minibatch order,
    learning-rate schedule and per-epoch checkpoints as a run from scratch, so a fine-tuning curve
    and a from-scratch curve differ only in where they start. Reused when complete."""
    recipe_ = TrainRecipe.from_mapping(recipe, "the fine-tuning recipe")
    done = (out / "manifest.json").exists() and Trajectory(out).complete
    ctx.say(f"{'reusing' if done else 'fine-tuning'} {what or out.name}: {recipe_.epochs} epochs, lr {recipe_.lr} "
            f"{recipe_.schedule}")  # fmt: skip
    traj = train(model, data, recipe_, seed=seed, out=out, init=state, control=TrainControl(progress=ctx.progress))
    curve = " ".join(pct(a) for a in traj.metrics("val_acc"))
    ctx.say(f"fine-tuned {what or out.name}: val acc per epoch {curve}")
    return traj


# ---------------------------------------------------------------------------------- evaluation


def eval_state(
    model: str, state: Mapping[str, torch.Tensor], pair: tuple[torch.Tensor, torch.Tensor]
) -> tuple[float, float]:
    """(loss, accuracy) of a state dict of ``model`` on ``(x, y)``."""
    net = build(model)
    net.load_state_dict(dict(state))
    return evaluate(net, *pair)


@torch.no_grad()
def predict_probs(
    model: str, state: Mapping[str, torch.Tensor], x: torch.Tensor, batch_size: int = 1024
) -> torch.Tensor:
    """Softmax outputs of a state dict of ``model`` on ``x`` (eval mode), for ensembles."""
    net = build(model)
    net.load_state_dict(dict(state))
    net.eval()
    return torch.cat(
        [logits_of(net(x[i : i + batch_size])).softmax(-1) for i in range(0, len(x), batch_size)]
    )


# ---------------------------------------------------------------------------------- outputs


def pct(x: float | None) -> str:
    """An accuracy fraction as a percentage with one decimal ('-' for missing)."""
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}"


def md_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A GitHub markdown table."""
    lines = ["| " + " | ".join(str(h) for h in headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def write_json(path: Path, obj: Any) -> None:
    atomic_write_json(path, obj)


def write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def save_figure(fig: Any, path: Path) -> None:
    """Save a matplotlib figure atomically (PNG) and close it."""
    import io

    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def pyplot():
    """matplotlib's pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def command_line() -> str:
    return " ".join(["python -m zoo.experiments", *sys.argv[1:]]) if sys.argv else ""

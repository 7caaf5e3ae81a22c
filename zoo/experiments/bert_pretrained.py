"""The pretrained scenario for a Hugging Face model, run the way its users run it.

Two tiny ``BertForSequenceClassification`` models built from a config are pretrained on one text task
(``[pretrain]``: is a window Python source or English prose?) from different seeds; each gets a new
classifier head (its own seed) and is fine-tuned on a second task (``[task]``: which standard-library
module a window of source comes from) with ``transformers.Trainer`` and
:class:`~transfer.record.TrajectoryCallback`. The source's fine-tuning is then transferred onto the
target's pretrained init with the ``transfer run`` and ``transfer diagnose`` command lines (``--model
hf:... --data zoo.data.textcls:...``), and training goes on from FGMT's and Naive's best points with
the ``Trainer`` under the standard fine-tuning's very arguments and seed (the same minibatch order).
Every training of the page is the ``Trainer``'s; every transfer is the command line's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from transfer.files import atomic_write_json
from transfer.trajectory import Trajectory
from zoo.experiments.kit.base import register
from zoo.experiments.kit.config import check_keys, check_methods
from zoo.experiments.kit.context import Context
from zoo.experiments.kit.pool import pool_folder
from zoo.experiments.kit.pretrained_pairs import PretrainedPairs, summarize
from zoo.models import build, canonical_id

__all__ = ["BertPretrained"]

RECIPE_KEYS = ("epochs", "lr", "batch_size", "weight_decay", "warmup")


def _trainer(model: torch.nn.Module, data: tuple, recipe: Mapping[str, Any], seed: int, out: Path, callbacks=()):
    """A ``transformers.Trainer`` with the page's recipe: AdamW, cosine with warm-up, one eval per epoch."""
    import numpy as np
    from transformers import PrinterCallback, Trainer, TrainingArguments

    def accuracy(pred) -> dict[str, float]:
        return {"accuracy": float((np.argmax(pred.predictions, -1) == pred.label_ids).mean())}

    args = TrainingArguments(
        output_dir=str(out / "hf"), num_train_epochs=recipe["epochs"], per_device_train_batch_size=recipe["batch_size"],
        learning_rate=recipe["lr"], weight_decay=recipe["weight_decay"], warmup_steps=recipe["warmup"],
        lr_scheduler_type="cosine", eval_strategy="epoch", logging_strategy="epoch", save_strategy="no",
        report_to=[], use_cpu=True, seed=seed, disable_tqdm=True,
    )  # fmt: skip
    trainer = Trainer(model=model, args=args, train_dataset=data[0], eval_dataset=data[1], compute_metrics=accuracy,
                      callbacks=list(callbacks))  # fmt: skip
    trainer.remove_callback(PrinterCallback)  # the page's progress lines say enough
    return trainer


def _train(model, data, recipe, seed: int, out: Path, callbacks=()) -> list[float]:
    """Train with the ``Trainer``; the validation accuracy before training and after each epoch."""
    trainer = _trainer(model, data, recipe, seed, out, callbacks)
    start = trainer.evaluate()["eval_accuracy"]
    before = len(trainer.state.log_history)  # the evaluation above is logged too
    trainer.train()
    return [start, *[h["eval_accuracy"] for h in trainer.state.log_history[before:] if "eval_accuracy" in h]]


def _cached_curve(folder: Path, make) -> list[float]:
    """``make()``'s accuracy curve, kept in ``folder/curve.json`` so a rerun reuses the training."""
    path = folder / "curve.json"
    if path.exists():
        return json.loads(path.read_text())["val_acc"]
    folder.mkdir(parents=True, exist_ok=True)
    curve = make()
    atomic_write_json(path, {"val_acc": curve})
    return curve


def _resolve(data_id: str):
    from zoo.data import resolve

    return resolve(data_id, trust_code=True)  # the config's own built-in task, named by the experiment


@register("bert_pretrained", "pretrained scenario with a tiny BERT through Trainer + TrajectoryCallback", rank=45)
class BertPretrained(PretrainedPairs):
    """Pretrain with the ``Trainer``, fine-tune with ``TrajectoryCallback``, transfer with the command line."""

    keys = ("model", "seeds", "head_seeds", "methods", "pretrain", "task", "transfer", "finetune")
    required = keys

    def check(self, cfg: Mapping[str, Any], where: str) -> None:
        check_methods(cfg["methods"], f"{where} methods")
        for table in ("pretrain", "task"):
            check_keys(cfg[table], ("data", "num_labels", *RECIPE_KEYS), f"{where} [{table}]",
                       required=("data", "num_labels", *RECIPE_KEYS))  # fmt: skip
        check_keys(cfg["finetune"], ("methods",), f"{where} [finetune]")

    def compute(self, ctx: Context) -> dict[str, Any]:
        cfg = ctx.config
        pairs = [self._pair(ctx, tuple(s), tuple(h)) for s, h in zip(cfg["seeds"], cfg["head_seeds"])]
        recipe = {k: cfg["task"][k] for k in RECIPE_KEYS}
        return {
            "model": pairs[0]["model"], "pretrain_data": cfg["pretrain"]["data"], "task_data": cfg["task"]["data"],
            "pairs": [p["seeds"] for p in pairs], "head_seeds": [p["head_seeds"] for p in pairs],
            "pretrain": {k: cfg["pretrain"][k] for k in RECIPE_KEYS}, "task_train": recipe,
            "transfer_setting": cfg["transfer"], "finetune_recipe": recipe,
            **summarize(pairs, cfg["methods"]), "per_pair": pairs,
        }  # fmt: skip

    def _pretrained(self, ctx: Context, seed: int) -> dict[str, torch.Tensor]:
        from safetensors.torch import load_file, save_file

        pre = ctx.config["pretrain"]
        model_id = canonical_id(ctx.config["model"], num_labels=pre["num_labels"])
        folder = pool_folder(ctx, "hfpretrain", model_id, dict(pre), seed)
        path = folder / "pretrained.safetensors"
        if not path.exists():
            ctx.say(f"pretraining {model_id} on {pre['data']} (seed {seed}) with the Trainer")
            torch.manual_seed(seed)
            model = build(model_id)
            curve = _cached_curve(folder, lambda: _train(model, _resolve(pre["data"]), pre, seed, folder))
            ctx.say(f"pretrained seed {seed}: val acc {100 * curve[-1]:.1f}")
            save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
        return load_file(str(path))

    def _task_model(self, ctx: Context, pretrained: Mapping[str, torch.Tensor], head_seed: int):
        """The task's model: a new classifier head drawn from ``head_seed``, the pretrained body."""
        model_id = canonical_id(ctx.config["model"], num_labels=ctx.config["task"]["num_labels"])
        torch.manual_seed(head_seed)
        model = build(model_id)
        body = {k: v for k, v in pretrained.items() if not k.startswith("classifier.")}
        missing, unexpected = model.load_state_dict(body, strict=False)
        assert not unexpected and all(k.startswith("classifier.") for k in missing), (missing, unexpected)
        return model_id, model

    def _fine_tune(self, ctx: Context, pretrained, head_seed: int, label: str) -> Path:
        from transfer.record import TrajectoryCallback

        task = ctx.config["task"]
        model_id, model = self._task_model(ctx, pretrained, head_seed)
        folder = pool_folder(ctx, "hftask", model_id, dict(task), {k: float(v.sum()) for k, v in pretrained.items()},
                             head_seed)  # fmt: skip
        run = folder / "run"
        if not ((run / "manifest.json").exists() and Trajectory(run).complete):
            ctx.say(f"{label}: fine-tune on {task['data']} with the Trainer + TrajectoryCallback")
            callback = TrajectoryCallback(run, model=model_id, data=task["data"], seed=head_seed)
            _cached_curve(folder, lambda: _train(model, _resolve(task["data"]), task, head_seed, folder, [callback]))
        return run

    def _cli(self, ctx: Context, *argv: str) -> None:
        """``transfer ARGV`` as a user runs it: its own process, this process's thread count."""
        quiet = argv[0] == "run" and not ctx.progress
        command = [sys.executable, "-m", "zoo.cli.transfer", *argv, "--device", ctx.device, *(["--no-progress"] * quiet)]
        ctx.say("transfer " + " ".join(argv))
        env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
        done = subprocess.run(command, env=env)
        if done.returncode != 0:
            raise RuntimeError(f"transfer {argv[0]} exited {done.returncode}")

    def _pair(self, ctx: Context, seeds: tuple[int, int], heads: tuple[int, int]) -> dict[str, Any]:
        cfg, tr = ctx.config, ctx.config["transfer"]
        pre = [self._pretrained(ctx, s) for s in seeds]
        source = self._fine_tune(ctx, pre[0], heads[0], f"pair {seeds} source")
        target = self._fine_tune(ctx, pre[1], heads[1], f"pair {seeds} target")
        model_id = Trajectory(source).model
        common = ["--model", model_id, "--data", cfg["task"]["data"], "--batch-size", str(tr["batch_size"]),
                  "--grad-batches", str(tr["grad_batches"]), "--seed", str(tr["seed"])]  # fmt: skip
        out = pool_folder(ctx, "hftransfer", str(source), str(target), dict(tr), cfg["methods"])
        diag_file = out.parent / f"{out.name}_diagnose.json"
        if not diag_file.exists():
            self._cli(ctx, "diagnose", str(source), str(target), *common, "--json", str(diag_file))
        self._cli(ctx, "run", "--method", ",".join(cfg["methods"]), "--source", str(source), "--target-init",
                  str(target), "--target", str(target), "--T", str(tr["T"]), *common, "--out", str(out))  # fmt: skip
        results = json.loads((out / "results.json").read_text())["methods"]
        finetune = {"scratch": json.loads((target.parent / "curve.json").read_text())["val_acc"]}
        for method in cfg["finetune"]["methods"]:
            finetune[f"from_{method}"] = self._from_point(ctx, out, results[method], heads[1], method)
        return {
            "seeds": list(seeds), "head_seeds": list(heads), "model": model_id,
            "source_val_acc": json.loads((source.parent / "curve.json").read_text())["val_acc"][-1],
            "diagnose": json.loads(diag_file.read_text()),
            "transfer": {m: {k: r[k] for k in ("t", "val_acc", "val_loss", "best_t")} for m, r in results.items()},
            "finetune": finetune,
        }  # fmt: skip

    def _from_point(self, ctx: Context, out: Path, result: Mapping[str, Any], seed: int, method: str) -> list[float]:
        """Fine-tune from a method's best transferred point with the standard fine-tuning's arguments."""
        task = ctx.config["task"]
        best_t = int(result["best_t"])
        state = Trajectory(out / method).load(best_t)
        model_id = Trajectory(out / method).model
        folder = pool_folder(ctx, "hffinetune", str(out), method, best_t, dict(task), seed)

        def make() -> list[float]:
            ctx.say(f"fine-tune from {method} t={best_t} with the Trainer")
            model = build(model_id)
            model.load_state_dict(state)
            return _train(model, _resolve(task["data"]), task, seed, folder)

        return _cached_curve(folder, make)

"""Figs. 5b / 6a: Conv8 trajectory transfer between random inits, then fine-tuning from the best
transferred point against training from scratch.

The paper's setting is CIFAR-10, full width, 60 epochs, T = 30 (``configs/conv8_cifar10.toml``, for
a machine with the CIFAR-10 folder). The default config runs Conv8 at width 0.25 on Fashion-MNIST
(``apt-get install dataset-fashion-mnist``), which fits a 2-core CPU.
"""

from __future__ import annotations

from typing import Any

from zoo.experiments.common import Context, ensure_run, get_data, model_for, pct, write_json, write_text
from zoo.experiments.reference import PAPER_CONV8
from zoo.experiments.scenario import (
    finetune_table,
    planted_control,
    save_pair_plot,
    transfer_table,
    transfer_then_finetune,
)

__all__ = ["run", "scenario"]


def run(ctx: Context) -> dict[str, Any]:
    out = scenario(ctx)
    write_json(ctx.out(".json"), out)
    png = save_pair_plot(ctx, out, f"{out['model'].split('?')[0]} on {out['data']}")
    write_text(ctx.out(".md"), _markdown(ctx, out, png))
    return out


def scenario(ctx: Context) -> dict[str, Any]:
    """Train source and target from random inits, transfer, fine-tune; the numbers (no files)."""
    cfg = ctx.config
    data = get_data(cfg["data"], subset=cfg.get("subset"), val_subset=cfg.get("val_subset"),
                    **cfg.get("data_options", {}))  # fmt: skip
    model = model_for(cfg["model"], data)
    train_kw = dict(cfg["train"])
    s1, s2 = cfg["seeds"]
    source = ensure_run(ctx, model, data, seed=s1, what=f"source {s1}", **train_kw)
    target = ensure_run(ctx, model, data, seed=s2, what=f"target / scratch {s2}", **train_kw)
    result = transfer_then_finetune(ctx, model, data, source, target, cfg, train_kw, standard_name="standard")
    out = {
        "experiment": ctx.name, "command": ctx.command, "model": model, "data": data.name,
        "train": train_kw, "transfer_setting": cfg["transfer"], "seeds": [s1, s2],
        "train_size": len(data.train[1]), **result,
    }  # fmt: skip
    out["source_val_acc_per_epoch"] = source.metrics("val_acc")
    if cfg.get("planted_control"):
        out["planted_control"] = planted_control(ctx, data, source, cfg)
    return out


def _markdown(ctx: Context, out: dict[str, Any], png: str) -> str:
    tr, ts = out["train"], out["transfer_setting"]
    ft = out["finetune"]
    lines = [
        f"# {ctx.config.get('title', 'Conv8: transfer, then fine-tune')}",
        "",
        f"Command: `{ctx.command}` (config `configs/{ctx.name}.toml`).",
        "",
        f"Setting: `{out['model']}` on `{out['data']}` ({out['train_size']} training samples); "
        f"source seed {out['seeds'][0]}, target seed {out['seeds'][1]}; training {tr}. Transfer: linear "
        f"trajectory, {ts}. Fine-tuning from the best transferred point (by validation accuracy): "
        f"{ft['recipe']}. Standard = the target's own training from its random init (scratch).",
        "",
        "## Transferred parameters (Fig. 5b)",
        "",
        transfer_table(out["transfer"], out["source_val_acc"]),
        "",
        *_control_lines(out),
        "## Subsequent training (Fig. 6a): fine-tuning vs scratch",
        "",
        finetune_table(ft, out["standard"]),
        "",
        f"![transfer and fine-tuning]({png})",
        "",
        "Paper, CIFAR-10, full width, for context: transfer at t=30 "
        + ", ".join(f"{k.upper()} {v}" for k, v in PAPER_CONV8["transfer_t30"].items())
        + f"; subsequent training epoch 1: transferred {PAPER_CONV8['finetune_epoch1'][0]}-"
        f"{PAPER_CONV8['finetune_epoch1'][1]} vs scratch {PAPER_CONV8['scratch_epoch1']}.",
        "",
    ]
    if ctx.config.get("notes"):
        lines += ["## Reading", "", ctx.config["notes"].strip(), ""]
    return "\n".join(lines)


def _control_lines(out: dict[str, Any]) -> list[str]:
    c = out.get("planted_control")
    if not c:
        return []
    accs = " ".join(pct(a) for a in c["val_acc"])
    return [
        f"Control: {c['method'].upper()} onto a randomly permuted copy of the source's own init (an exact "
        f"permutation exists), t = 0..T: {accs}. Source's own checkpoints by epoch: "
        + " ".join(pct(a) for a in out["source_val_acc_per_epoch"])
        + ".",
        "",
    ]

"""Figs. 5d-f / 6b-d in miniature: transfer a fine-tuning trajectory between two pretrained inits.

Two networks are pretrained on one task from different seeds (by default MNIST digits 0-4), their
classifier heads are re-initialised with different seeds, and each is fine-tuned on a second task
(digits 5-9): the "standard" fine-tuning. The source's fine-tuning trajectory is then transferred
onto the other pretrained init, and training goes on from the best transferred point. This is the
paper's ImageNet -> Cars / CUB setting, shrunk to what a CPU does in minutes.
"""

from __future__ import annotations

from typing import Any

from zoo.experiments.common import (
    Context,
    _key,
    ensure_run,
    get_data,
    model_for,
    pct,
    train_from,
    write_json,
    write_text,
)
from zoo.experiments.scenario import (
    finetune_table,
    reinit_head,
    save_pair_plot,
    transfer_table,
    transfer_then_finetune,
)

__all__ = ["run"]


def run(ctx: Context) -> dict[str, Any]:
    cfg = ctx.config
    pre, task = cfg["pretrain"], cfg["task"]
    data_a = get_data(cfg["data"], labels=pre.get("labels"), subset=pre.get("subset"),
                      val_subset=cfg.get("val_subset"))  # fmt: skip
    data_b = get_data(task.get("data", cfg["data"]), labels=task.get("labels"), subset=task.get("subset"),
                      val_subset=cfg.get("val_subset"))  # fmt: skip
    model = model_for(cfg["model"], data_a)
    s1, s2 = cfg["seeds"]
    h1, h2 = cfg["head_seeds"]
    pre_a = ensure_run(ctx, model, data_a, seed=s1, what=f"pretrain {s1}", **pre["train"])
    pre_b = ensure_run(ctx, model, data_a, seed=s2, what=f"pretrain {s2}", **pre["train"])
    recipe = dict(task["train"])
    runs = {}
    for name, pre_run, head in (("source", pre_a, h1), ("target", pre_b, h2)):
        init = reinit_head(pre_run.final(), model, head)
        folder = ctx.pool / f"taskft_{_key(str(pre_run.path), head, data_b.name, recipe)}"
        what = f"{name}: fine-tune on the task"
        runs[name] = train_from(ctx, init, model, data_b, folder, seed=head, what=what, **recipe)
    result = transfer_then_finetune(ctx, model, data_b, runs["source"], runs["target"], cfg, recipe)
    out = {
        "experiment": ctx.name, "command": ctx.command, "model": model, "pretrain_data": data_a.name,
        "task_data": data_b.name, "seeds": [s1, s2], "head_seeds": [h1, h2],
        "pretrain": pre["train"], "task_train": recipe, "transfer_setting": cfg["transfer"],
        "pretrained_val_acc": [pre_a.metrics("val_acc")[-1], pre_b.metrics("val_acc")[-1]], **result,
    }  # fmt: skip
    write_json(ctx.out(".json"), out)
    png = save_pair_plot(ctx, out, f"{model.split('?')[0]}: {data_a.name} -> {data_b.name}")
    write_text(ctx.out(".md"), _markdown(ctx, out, png))
    return out


def _markdown(ctx: Context, out: dict[str, Any], png: str) -> str:
    lines = [
        f"# {ctx.config.get('title', 'Transfer between pretrained inits')}",
        "",
        f"Command: `{ctx.command}` (config `configs/{ctx.name}.toml`).",
        "",
        f"Setting: `{out['model']}`. Pretraining on `{out['pretrain_data']}` from seeds {out['seeds']} "
        f"({out['pretrain']}; val acc {', '.join(pct(a) for a in out['pretrained_val_acc'])} %). Heads "
        f"re-initialised with seeds {out['head_seeds']}, then fine-tuned on `{out['task_data']}` "
        f"({out['task_train']}): the source's fine-tuning is the trajectory transferred; the target's is "
        f"Standard. Transfer: linear trajectory, {out['transfer_setting']}.",
        "",
        "## Transferred parameters (Fig. 5d-f)",
        "",
        transfer_table(out["transfer"], out["source_val_acc"]),
        "",
        "## Subsequent training (Fig. 6b-d): from the transferred point vs standard fine-tuning",
        "",
        finetune_table(out["finetune"], out["standard"]),
        "",
        f"![transfer and fine-tuning]({png})",
        "",
    ]
    if ctx.config.get("notes"):
        lines += ["## Reading", "", ctx.config["notes"].strip(), ""]
    return "\n".join(lines)

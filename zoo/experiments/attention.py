"""Beyond the paper: trajectory transfer for attention models through inferred head structure.

``vit_tiny`` (MNIST) and ``gpt_tiny`` (characters of Python's standard library) have no hand-written
permutation spec anywhere: ``permgraph.infer`` finds their groups (the residual stream, the MLP
hidden units, and per attention layer the heads, the query/key dims within a head and the value
dims within a head), and GMT / FGMT solve over them (heads by an outer assignment, dims within).
The experiment is the Conv8 one (random inits, transfer, then fine-tuning against scratch) with the
groups listed beside, and for the language model the loss as well as the next-character accuracy.
"""

from __future__ import annotations

from typing import Any

import permgraph
from zoo.experiments.common import Context, write_json, write_text
from zoo.experiments.conv8 import _control_lines, scenario
from zoo.experiments.scenario import finetune_table, save_pair_plot, transfer_table
from zoo.models import build, example_inputs

__all__ = ["run", "group_summary"]


def group_summary(model: str) -> list[dict[str, Any]]:
    """The inferred groups of ``model``: name, size, free or blocked (with the reason), and the
    structures its members see the permutation in."""
    net = build(model)
    spec = permgraph.infer(net, example_inputs(net))
    return [
        {
            "name": g.name,
            "size": g.size,
            "blocked": g.blocked,
            "members": len(g.members),
            "structures": sorted({m.structure for m in g.members}),
        }
        for g in spec.groups
    ]


def run(ctx: Context) -> dict[str, Any]:
    out = scenario(ctx)
    out["groups"] = group_summary(out["model"])
    write_json(ctx.out(".json"), out)
    png = save_pair_plot(ctx, out, f"{out['model'].split('?')[0]} on {out['data']}")
    write_text(ctx.out(".md"), _markdown(ctx, out, png))
    return out


def _markdown(ctx: Context, out: dict[str, Any], png: str) -> str:
    from zoo.experiments.common import md_table

    free = [g for g in out["groups"] if not g["blocked"]]
    rows = [[f"`{g['name']}`", g["size"], g["members"], "; ".join(g["structures"])] for g in free]
    blocked = [f"`{g['name']}` ({g['blocked']})" for g in out["groups"] if g["blocked"]]
    tr, ts = out["train"], out["transfer_setting"]
    lines = [
        f"# {ctx.config.get('title', ctx.name)}",
        "",
        f"Command: `{ctx.command}` (config `configs/{ctx.name}.toml`).",
        "",
        f"Setting: `{out['model']}` on `{out['data']}` ({out['train_size']} training samples); seeds "
        f"{out['seeds']}; training {tr}. Transfer: linear trajectory, {ts}. Fine-tuning from the best "
        f"transferred point: {out['finetune']['recipe']}. Standard = the target's own training from scratch.",
        "",
        f"## Groups found by `permgraph.infer` ({len(free)} free)",
        "",
        md_table(["group", "size", "tensors", "how members see it"], rows),
        "",
        "Blocked: " + (", ".join(blocked) if blocked else "none") + ".",
        "",
        "## Transferred parameters: validation accuracy (%)",
        "",
        transfer_table(out["transfer"], out["source_val_acc"]),
        "",
        "## Transferred parameters: validation loss",
        "",
        transfer_table(out["transfer"], metric="val_loss"),
        "",
        *_control_lines(out),
        "## Subsequent training: fine-tuning vs scratch (validation accuracy, %)",
        "",
        finetune_table(out["finetune"], out["standard"]),
        "",
        f"![transfer and fine-tuning]({png})",
        "",
    ]
    if ctx.config.get("notes"):
        lines += ["## Reading", "", ctx.config["notes"].strip(), ""]
    return "\n".join(lines)

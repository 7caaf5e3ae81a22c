"""Check ``transfer diagnose``'s verdict against what transfer then measured, experiment by experiment
-> docs/results/diagnose.md.

    python bench/diagnose_validation.py [--only NAME ...] [--threads 1]

For each experiment page in docs/results with GMT / FGMT and Naive between two runs, this reopens
the pair the page used (from the experiments' run pool: trained again where missing, deterministic,
so the very same runs), runs ``transfer.diagnose.diagnose`` on the source trajectory and the target
init with the page's transfer settings, and compares the verdict with the measured outcome: transfer
*helped* when the best of GMT / FGMT beat Naive's best transferred accuracy by at least ``HELPED``
(3 points, fixed before the check). Pages that already record a diagnosis (resnet_pretrained,
gpt_pretrained, random_init) are read as they are.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from transfer.diagnose import diagnose  # noqa: E402
from transfer.options import TransferOptions, options_from  # noqa: E402
from zoo.experiments.kit.base import load_config  # noqa: E402
from zoo.experiments.kit.context import Context  # noqa: E402
from zoo.experiments.kit.pool import pool_folder, train_from  # noqa: E402
from zoo.experiments.kit.runner import reading_of  # noqa: E402
from zoo.experiments.kit.scenario import reinit_head  # noqa: E402
from zoo.experiments.kit.setting import Setting, open_pair, open_view  # noqa: E402
from zoo.models import build  # noqa: E402

HELPED = 0.03
RESULTS = ROOT / "docs" / "results"
Row = dict[str, Any]


def _best(curves: Mapping[str, Any], method: str) -> float | None:
    entry = curves.get(method)
    return None if entry is None else max(entry["val_acc"])


def _outcome(transfer: Mapping[str, Any]) -> tuple[float | None, float | None]:
    """(best of GMT / FGMT, Naive's best) of one transfer's per-method results."""
    matched = [b for b in (_best(transfer, "gmt"), _best(transfer, "fgmt")) if b is not None]
    return (max(matched) if matched else None), _best(transfer, "naive")


def _diagnose(ctx: Context, pair, transfer: Mapping[str, Any]) -> dict[str, Any]:
    options = options_from(TransferOptions, {**transfer, "progress": False}, "transfer")
    return diagnose(build(pair.model), pair.data, pair.source, pair.target.init(), options).to_json()


def _row(experiment: str, case: str, diag: Mapping[str, Any], matched: float | None, naive: float | None) -> Row:
    return {"experiment": experiment, "case": case, "diagnose": dict(diag), "matched_best": matched, "naive_best": naive}


def _fig5a(ctx: Context) -> Iterator[Row]:
    cfg, page = load_config("fig5a"), json.loads((RESULTS / "fig5a.json").read_text())
    seeds = cfg["seeds"][0]
    pair = open_pair(ctx, Setting.from_config(cfg, "fig5a", seeds=seeds))
    name = "cosine, 20 batches"  # the paper's setting; page["pairs"][i]["variants"][name] holds the first pair's curves
    variant = page["variants"][name]
    yield _row("fig5a", f"{name}, pair {seeds}", _diagnose(ctx, pair, variant["setting"]),
               *_outcome(page["pairs"][0]["variants"][name]))  # fmt: skip


def _gap(ctx: Context) -> Iterator[Row]:
    from zoo.experiments.gap import variant_model, variants

    cfg, page = load_config("fig5a_gap"), json.loads((RESULTS / "fig5a_gap.json").read_text())
    recorded = {r["name"]: r for r in page["variants"]}
    for name, v in variants(cfg).items():
        if name not in recorded:
            continue
        model = variant_model(int(v["width"]), float(v.get("init_scale", 1.0)))
        setting = Setting(name=name, model=model, data=cfg["data"], seeds=tuple(cfg["seeds"]), train=v["train"],
                          transfer=v["transfer"], subset=cfg.get("subset"), val_subset=cfg.get("val_subset"))  # fmt: skip
        pair = open_pair(ctx, setting)
        yield _row("fig5a_gap", name, _diagnose(ctx, pair, v["transfer"]), *_outcome(recorded[name]["methods"]))


def _pair_page(name: str) -> Iterator[Row]:
    """conv8, vit_tiny, gpt_tiny: one pair from the config's top level; the page's ``transfer``."""

    def rows(ctx: Context) -> Iterator[Row]:
        cfg, page = load_config(name), json.loads((RESULTS / f"{name}.json").read_text())
        pair = open_pair(ctx, Setting.from_config(cfg, name))
        yield _row(name, f"pair {cfg['seeds']}", _diagnose(ctx, pair, cfg["transfer"]), *_outcome(page["transfer"]))

    return rows


def _pretrained(ctx: Context) -> Iterator[Row]:
    """The Conv8 pretrained page: the task fine-tunings are the pair (as zoo.experiments.pretrained opens them)."""
    cfg, page = load_config("pretrained"), json.loads((RESULTS / "pretrained.json").read_text())
    pre, task = cfg["pretrain"], cfg["task"]
    view = dict(model=cfg["model"], data=cfg["data"], seeds=tuple(cfg["seeds"]), val_subset=cfg.get("val_subset"))
    pretrained = open_pair(ctx, Setting(name="pretrain", **view, train=pre["train"], subset=pre.get("subset"),
                                        labels=pre.get("labels")))  # fmt: skip
    task_setting = Setting(**{**view, "name": "task", "data": task.get("data", cfg["data"])}, train=task["train"],
                           subset=task.get("subset"), labels=task.get("labels"))  # fmt: skip
    data, _ = open_view(task_setting)
    runs = []
    for run, head in zip((pretrained.source, pretrained.target), cfg["head_seeds"]):
        start = reinit_head(run.final(), pretrained.model, head)
        folder = pool_folder(ctx, "taskft", str(run.path), head, data.name, dict(task["train"]))
        runs.append(train_from(ctx, start, pretrained.model, data, folder, dict(task["train"]), seed=head))
    pair = type(pretrained)(task_setting, data, pretrained.model, runs[0], runs[1])
    yield _row("pretrained", f"pair {cfg['seeds']}", _diagnose(ctx, pair, cfg["transfer"]), *_outcome(page["transfer"]))


def _recorded(name: str) -> Iterator[Row]:
    """Pages that diagnose their own pairs: resnet_pretrained / gpt_pretrained (per pair), random_init (per case)."""

    def rows(ctx: Context) -> Iterator[Row]:
        path = RESULTS / f"{name}.json"
        if not path.exists():
            return
        page = json.loads(path.read_text())
        if name == "random_init":
            for case in page["cases"]:
                for p in case["pairs"]:
                    yield _row(name, f"{case['name']}, pair {p['seeds']}", p["diagnose"], *_outcome(p["transfer"]))
            return
        for p in page["per_pair"]:
            yield _row(name, f"pair {p['seeds']}", p["diagnose"], *_outcome(p["transfer"]))

    return rows


SOURCES = {
    "fig5a": _fig5a, "fig5a_gap": _gap, "conv8": _pair_page("conv8"), "pretrained": _pretrained,
    "vit_tiny": _pair_page("vit_tiny"), "gpt_tiny": _pair_page("gpt_tiny"),
    "resnet_pretrained": _recorded("resnet_pretrained"), "gpt_pretrained": _recorded("gpt_pretrained"),
    "random_init": _recorded("random_init"),
}  # fmt: skip


def report(rows: list[Row], command: str) -> str:
    lines = [
        "# Does `transfer diagnose` predict the transfer? Its verdict against every experiment", "",
        f"Command: `{command}`. The verdict (`likely` / `unlikely` to help beyond Naive) is computed before any "
        "transfer from the source trajectory and the target init alone; *helped* means the best of GMT / FGMT "
        f"beat Naive's best transferred accuracy by at least {100 * HELPED:.0f} points on the experiment's page.", "",
        "| experiment | case | ‖θ₂⁰‖ / ‖Δ₁‖ | gradient cosine unpermuted / permuted (held out) | verdict | "
        "GMT/FGMT best | Naive best | margin | helped | verdict right |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    right = 0
    for r in rows:
        d = r["diagnose"]
        margin = None if r["matched_best"] is None or r["naive_best"] is None else r["matched_best"] - r["naive_best"]
        helped = margin is not None and margin >= HELPED
        ok = (d["verdict"] == "likely") == helped
        right += ok
        shown = "-" if margin is None else f"{100 * margin:+.1f}"
        lines.append(
            f"| {r['experiment']} | {r['case']} | {d['ratio_total']:.2f} | {d['cos_identity']:.3f} / "
            f"{d['cos_permuted']:.3f} | {d['verdict']} | {_pct(r['matched_best'])} | {_pct(r['naive_best'])} | "
            f"{shown} | {'yes' if helped else 'no'} | {'yes' if ok else '**no**'} |"
        )  # fmt: skip
    lines += ["", f"The verdict was right on {right} of {len(rows)} cases.", ""]
    return "\n".join(lines)


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--only", nargs="*", default=None, help=f"some of {', '.join(SOURCES)}")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", default=str(RESULTS / "diagnose.md"))
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    ctx = Context("diagnose", {}, runs=ROOT / "runs" / "experiments" / "diagnose", docs=RESULTS,
                  pool=ROOT / "runs" / "experiments" / "_runs", progress=False)  # fmt: skip
    cache = RESULTS / "diagnose.json"
    rows = json.loads(cache.read_text())["rows"] if cache.exists() else []
    for name, source in SOURCES.items():
        if args.only and name not in args.only:
            continue
        rows = [r for r in rows if r["experiment"] != name] + list(source(ctx))
        order = list(SOURCES)
        rows.sort(key=lambda r: order.index(r["experiment"]))
        cache.write_text(json.dumps({"rows": rows}, indent=1) + "\n")  # kept after each experiment: resumable
    command = "python bench/diagnose_validation.py " + " ".join(sys.argv[1:])
    page = Path(args.out)
    reading = reading_of(page.read_text()) if page.exists() else None  # written by a person: kept
    page.write_text(report(rows, command.strip()) + ("\n" + reading if reading else ""))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

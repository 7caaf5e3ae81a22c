"""Wall time and peak memory of GMT and FGMT against training the same trajectory.

Each measured job (train the source, train the target init's run is not needed, GMT, FGMT) runs in
its own subprocess so its peak RSS (``ru_maxrss``) is its own; wall time is measured inside the
child around the work only (imports and data loading excluded, reported separately).

    .venv/bin/python bench/transfer_cost.py                 # mlp2/MNIST (paper setting) + conv8/MNIST
    .venv/bin/python bench/transfer_cost.py --quick         # small settings, a minute

Writes ``docs/results/transfer_cost.md`` (``--out``) with the table and the command that made it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SETTINGS = {
    "mlp2-mnist": dict(model="zoo:mlp2?width=4096", data="mnist", subset=None, epochs=15, lr=0.01, T=5),
    "conv8w0.125-mnist": dict(
        model="zoo:conv8?width=0.125&in_channels=1", data="mnist", subset=None, epochs=5, lr=0.01, T=5
    ),
}
QUICK = {
    "mlp2w512-mnist5k": dict(model="zoo:mlp2?width=512", data="mnist", subset=5000, epochs=2, lr=0.01, T=3),
    "conv8w0.125-mnist5k": dict(
        model="zoo:conv8?width=0.125&in_channels=1", data="mnist", subset=5000, epochs=2, lr=0.01, T=3
    ),
}


def _child(job: str, cfg: dict, work: str) -> dict:
    """Runs in the subprocess: load data, then time only the job itself."""
    sys.path.insert(0, str(ROOT))
    t_import = time.perf_counter()
    from transfer.methods import run_transfer
    from zoo.data import load
    from zoo.train import train

    data = load(cfg["data"], subset=cfg["subset"])
    setup = time.perf_counter() - t_import
    t0 = time.perf_counter()
    if job in ("train", "train_target"):
        seed = 1 if job == "train" else 2
        train(cfg["model"], data, epochs=cfg["epochs"], lr=cfg["lr"], momentum=0.9, batch_size=128, seed=seed,
              out=Path(work) / f"run{seed}", progress=False)  # fmt: skip
        extra = {}
    else:
        res = run_transfer(job, Path(work) / "run1", 2, data, T=cfg["T"], out=Path(work) / "transfer",
                           progress=False)  # fmt: skip
        extra = {
            "val_acc": res["val_acc"],
            "method_seconds": res["seconds"],
            "lsa_seconds": res["lsa_seconds"],
        }
    wall = time.perf_counter() - t0
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"job": job, "wall_s": wall, "setup_s": setup, "peak_rss_mib": rss_mib, **extra}


def _measure(job: str, cfg: dict, work: str) -> dict:
    cmd = [sys.executable, __file__, "--child", job, "--cfg", json.dumps(cfg), "--work", work]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"{job} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="small settings (about a minute)")
    p.add_argument("--only", default=None, help="comma-separated setting names")
    p.add_argument("--out", default=None, help="default docs/results/transfer_cost.md (not with --quick)")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--cfg", default=None, help=argparse.SUPPRESS)
    p.add_argument("--work", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(_child(args.child, json.loads(args.cfg), args.work)))
        return 0
    settings = QUICK if args.quick else SETTINGS
    if args.only:
        settings = {k: v for k, v in settings.items() if k in args.only.split(",")}
    command = "bench/transfer_cost.py " + " ".join(argv if argv is not None else sys.argv[1:])
    rows = []
    for name, cfg in settings.items():
        with tempfile.TemporaryDirectory(prefix="transfer_cost_") as work:
            res = {job: _measure(job, cfg, work) for job in ("train", "gmt", "fgmt")}
        train_s = res["train"]["wall_s"]
        row = {"setting": name, **cfg, "results": res}
        rows.append(row)
        print(f"{name}: train {train_s:.1f} s ({res['train']['peak_rss_mib']:.0f} MiB)")
        for m in ("gmt", "fgmt"):
            r = res[m]
            print(f"  {m:5s} {r['wall_s']:7.1f} s = {r['wall_s'] / train_s:.2f} x training "
                  f"(LSA {r['lsa_seconds']:.1f} s), peak {r['peak_rss_mib']:.0f} MiB, "
                  f"val acc t=T {100 * r['val_acc'][-1]:.1f} %")  # fmt: skip
    lines = [
        "# Transfer cost: GMT / FGMT against training the source trajectory",
        "",
        f"Made by `{command.strip()}` on {time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPU cores, "
        "CPU only, one subprocess per job (peak RSS is that process's own, torch import included).",
        "Wall time counts the job only (data already loaded). Transfer: linear trajectory, uniform "
        "schedule, 20 minibatches of 128 per gradient, target init seed 2, source seed 1.",
        "",
        "| setting | epochs | T | train s | GMT s (x train) | FGMT s (x train) | LSA s GMT / FGMT "
        "| peak MiB train / GMT / FGMT | val acc t=T GMT / FGMT |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        r = row["results"]
        tr, g, f = r["train"], r["gmt"], r["fgmt"]
        lines.append(
            f"| {row['setting']} | {row['epochs']} | {row['T']} | {tr['wall_s']:.1f} "
            f"| {g['wall_s']:.1f} ({g['wall_s'] / tr['wall_s']:.2f}) "
            f"| {f['wall_s']:.1f} ({f['wall_s'] / tr['wall_s']:.2f}) "
            f"| {g['lsa_seconds']:.1f} / {f['lsa_seconds']:.1f} "
            f"| {tr['peak_rss_mib']:.0f} / {g['peak_rss_mib']:.0f} / {f['peak_rss_mib']:.0f} "
            f"| {100 * g['val_acc'][-1]:.1f} / {100 * f['val_acc'][-1]:.1f} |"
        )
    lines += ["", "Settings:", "", "```json", json.dumps({r["setting"]: {k: v for k, v in r.items()
              if k not in ("results", "setting")} for r in rows}, indent=1), "```", ""]  # fmt: skip
    out = args.out or (None if args.quick else str(ROOT / "docs" / "results" / "transfer_cost.md"))
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text("\n".join(lines))
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What a transfer costs against training the source: whole commands, one sitting, one at a time.

For each setting this runs, as separate processes and one after the other (never two at once):

1. ``zoo train`` of the source (seed 101): the denominator, the whole command's wall time;
2. ``transfer run --method fgmt --no-trajectory`` and ``--method gmt --no-trajectory`` onto the
   init of seed 102 (``results.json`` only: what a user who wants the numbers asks for);
3. ``transfer run --method fgmt`` with its default outputs (the transferred trajectory written too);
4. the same FGMT with empty caches (``PERMGRAPH_CACHE`` a new folder): a user's very first transfer,
   which decodes the dataset and traces the model.

The dataset is decoded and the model's spec traced into the user cache before anything is timed, so
training and the transfers read the data alike (``zoo.data``) and jobs 2-3 find the spec, as every
transfer after a user's first one of that architecture does; job 4 measures that first one.

Before each job it reads the load average, and with ``--max-load L`` (default 1.0) waits until the
1-minute load is below L (``--wait`` seconds at most, then runs anyway and says so). A ratio is printed
only when both of its sides started under L; otherwise the table shows it struck through with both
loads, since a ratio of two times taken under different load means nothing. Each transfer's time per
phase comes from its ``results.json`` (``transfer.engine.PHASES``), and beside the measured ratio
stands the floor: the phases FGMT / GMT cannot skip (gradients, evaluations, assignment solves) as a
fraction of the same training, and the minibatch-gradient count against the training steps.

    .venv/bin/python bench/transfer_cost.py                 # the paper's mlp2/MNIST, Conv8 and ResNet-20 rows
    .venv/bin/python bench/transfer_cost.py --quick         # small settings, a few minutes
    .venv/bin/python bench/transfer_cost.py --only mlp2-mnist --max-load 1.0 --wait 1800

Writes ``docs/results/transfer_cost.md`` (``--out``; ``--quick`` writes nothing unless given one), with
the raw results (every job's command, load, wall, CPU, peak memory and phases) as JSON at the end.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from transfer.engine import PHASES  # noqa: E402  (after the path: runs from a checkout)

SETTINGS = {
    # the paper's setting: mlp2 784-4096-10 on MNIST, 15 epochs, seeds 101 -> 102, T = 5, cosine
    "mlp2-mnist": dict(model="mlp2", data="mnist", subset=None, epochs=15, lr=0.01, optimizer="sgd", T=5,
                       schedule="cosine"),  # fmt: skip
    # Conv8 has no BatchNorm: with SGD at this budget it sits at chance for the first epochs, so AdamW
    "conv8w0.125-mnist20k": dict(model="zoo:conv8?width=0.125&in_channels=1", data="mnist", subset=20000,
                                 epochs=4, lr=1e-3, optimizer="adamw", T=5, schedule="cosine"),  # fmt: skip
    # ResNet-20 (BatchNorm: one pass per minibatch, statistics re-estimated before every evaluation)
    "resnet20w0.5-mnist10k": dict(model="zoo:resnet20?width=0.5&in_channels=1", data="mnist", subset=10000,
                                  epochs=2, lr=0.02, optimizer="sgd", T=5, schedule="cosine"),  # fmt: skip
}
QUICK = {
    "mlp2w512-mnist5k": dict(model="zoo:mlp2?width=512", data="mnist", subset=5000, epochs=2, lr=0.01,
                             optimizer="sgd", T=5, schedule="cosine"),  # fmt: skip
}
GRAD_BATCHES, BATCH = 20, 128
JOBS = ("train", "fgmt", "gmt", "fgmt+trajectory", "fgmt, empty caches")
OUTS = {"fgmt": "fgmt", "gmt": "gmt", "fgmt+trajectory": "fgmt_traj", "fgmt, empty caches": "fgmt_cold"}


def _commands(cfg: dict, work: Path) -> dict[str, list[str]]:
    py = [sys.executable, "-m"]
    train = [*py, "zoo", "train", "--model", cfg["model"], "--data", cfg["data"], "--epochs", str(cfg["epochs"]),
             "--lr", str(cfg["lr"]), "--optimizer", cfg["optimizer"], "--momentum", "0.9", "--batch-size", str(BATCH),
             "--seed", "101", "--out", str(work / "s101"), "--no-progress"]  # fmt: skip
    if cfg["subset"]:
        train += ["--subset", str(cfg["subset"])]
    run = [*py, "zoo.cli.transfer", "run", "--source", str(work / "s101"), "--target-init", "102", "--T", str(cfg["T"]),
           "--schedule", cfg["schedule"], "--grad-batches", str(GRAD_BATCHES), "--batch-size", str(BATCH),
           "--device", "cpu", "--no-progress"]  # fmt: skip
    return {
        "train": train,
        "fgmt": [*run, "--method", "fgmt", "--out", str(work / "fgmt"), "--no-trajectory"],
        "gmt": [*run, "--method", "gmt", "--out", str(work / "gmt"), "--no-trajectory"],
        "fgmt+trajectory": [*run, "--method", "fgmt", "--out", str(work / "fgmt_traj")],
        "fgmt, empty caches": [*run, "--method", "fgmt", "--out", str(work / "fgmt_cold"), "--no-trajectory"],
    }


def _wait_for_quiet(max_load: float | None, wait: float) -> tuple[list[float], float]:
    """Sleep until the 1-minute load average is below ``max_load`` (at most ``wait`` seconds);
    returns the load average when the job starts and the seconds waited."""
    t0 = time.monotonic()
    while max_load is not None and os.getloadavg()[0] >= max_load and time.monotonic() - t0 < wait:
        time.sleep(10)
    return [round(x, 2) for x in os.getloadavg()], round(time.monotonic() - t0, 1)


def _job(name: str, cmd: list[str], result: Path | None, quiet: tuple, env: dict, cwd: Path = ROOT) -> dict:
    """One command in its own process: wall time around the whole command, its CPU time and peak RSS."""
    load, waited = _wait_for_quiet(*quiet)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{name} failed ({proc.returncode}):\n{out[-3000:]}")
    row = {
        "job": name, "command": " ".join(Path(c).name if c == sys.executable else c for c in cmd),
        "load_before": load, "waited_s": waited, "wall_s": round(wall, 2),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 1), "peak_rss_mib": round(usage.ru_maxrss / 1024),
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }  # fmt: skip
    if result is not None:
        entry = next(iter(json.loads(result.read_text())["methods"].values()))
        row.update({k: entry[k] for k in ("val_acc", "phases", "lsa_calls", "lsa_seconds")})
        if "lap_proofs" in entry:
            row["lap_proofs"] = entry["lap_proofs"]
    return row


def _steps(cfg: dict) -> int:
    from zoo.data import load

    n = cfg["subset"] or load(cfg["data"]).sizes()["train"]
    return cfg["epochs"] * math.ceil(n / BATCH)


def export_revision(rev: str, code: Path) -> Path:
    """The files of git revision ``rev`` (read from git: no worktree, nothing of this checkout)
    extracted into the new folder ``code``; run with ``PYTHONPATH=code``."""
    code.mkdir()
    archive = subprocess.run(["git", "archive", rev], cwd=ROOT, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(code)], input=archive, check=True)
    return code


def _before(rev: str, work: Path, cmds: dict, quiet: tuple[float | None, float]) -> dict:
    """FGMT and GMT with their default outputs by the code of git revision ``rev`` (its files only,
    read from git), in the same sitting: the whole commands before the changes measured here."""
    code = export_revision(rev, work / "before_code")
    env = {**os.environ, "PYTHONPATH": str(code)}
    res = {}
    for method in ("fgmt", "gmt"):
        out = work / f"before_{method}"
        cmd = [c for c in cmds[method] if c != "--no-trajectory"]
        cmd[cmd.index("--out") + 1] = str(out)
        row = _job(f"{method} before", cmd, None, quiet, env, cwd=code)
        entry = json.loads((out / "results.json").read_text())["methods"][method]
        row.update(val_acc=entry["val_acc"], rev=rev, **{k: entry[k] for k in ("seconds", "eval_seconds", "lsa_seconds")})
        res[f"{method} before"] = row
        print(f"  {method} before ({rev}) {row['wall_s']:8.1f} s  (load {row['load_before'][0]})", flush=True)
    return res


def measure(cfg: dict, quiet: tuple[float | None, float], before: str | None = None) -> dict:
    with tempfile.TemporaryDirectory(prefix="transfer_cost_") as tmp:
        work = Path(tmp)
        cmds = _commands(cfg, work)
        # decode the data and trace the spec once, into the user cache, before anything is timed
        warm_up = ("from zoo.data import load; from zoo.models import build; from transfer.engine import TransferEngine; "
                   f"TransferEngine(build({cfg['model']!r}), load({cfg['data']!r})).spec")  # fmt: skip
        subprocess.run([sys.executable, "-c", warm_up], cwd=ROOT, check=True)
        res = {}
        for job in JOBS:
            out = None if job == "train" else work / OUTS[job] / "results.json"
            env = dict(os.environ)
            if job.endswith("empty caches"):
                env["PERMGRAPH_CACHE"] = str(work / "empty_cache")
            res[job] = _job(job, cmds[job], out, quiet, env)
            print(f"  {job:18s} {res[job]['wall_s']:8.1f} s  (load {res[job]['load_before'][0]})", flush=True)
        if before:
            res.update(_before(before, work, cmds, quiet))
    T = cfg["T"]
    return {**cfg, "train_steps": _steps(cfg), "minibatch_gradients": {"fgmt": 2 * T * GRAD_BATCHES,
            "gmt": (T + T * (T + 1) // 2 - 1) * GRAD_BATCHES}, "results": res}  # fmt: skip


# ---- the report ------------------------------------------------------------------------------------
FLOOR = ("gradients", "evaluation", "solves")
WORK = ("gradients", "accumulate", "evaluation")  # issue 19's floor: what no solver can remove


def _ratio(job: dict, train: dict, max_load: float | None, seconds: float | None = None) -> str:
    """``seconds`` (default the job's wall) over training's wall, struck through when the two sides did
    not both start below ``max_load``."""
    r = (job["wall_s"] if seconds is None else seconds) / train["wall_s"]
    loads = (job["load_before"][0], train["load_before"][0])
    if max_load is not None and max(loads) >= max_load:
        return f"~~{r:.3f}~~ (load {loads[1]} / {loads[0]}: not comparable)"
    return f"**{r:.3f}**"


def _table(rows: dict, max_load: float | None) -> list[str]:
    lines = [
        "| setting | training s (load) | method | transfer s (load) | × training | floor s | floor × training "
        "| (wall − start-up) ÷ (gradients + accumulate + evaluation) | gradients / steps | val acc t = 0..T (%) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, row in rows.items():
        r, tr = row["results"], row["results"]["train"]
        for job in JOBS[1:]:
            j = r[job]
            floor = sum(j["phases"][k] for k in FLOOR)
            grads = row["minibatch_gradients"]["gmt" if job == "gmt" else "fgmt"]
            acc = " ".join(f"{100 * a:.1f}" for a in j["val_acc"])
            work = sum(j["phases"][k] for k in WORK)
            to_work = (j["wall_s"] - j["phases"]["startup"]) / work if work > 0 else float("nan")
            lines.append(
                f"| {name} | {tr['wall_s']:.1f} ({tr['load_before'][0]}) | {job} | {j['wall_s']:.1f} "
                f"({j['load_before'][0]}) | {_ratio(j, tr, max_load)} | {floor:.1f} | {_ratio(j, tr, None, floor)} "
                f"| {to_work:.2f} | {grads} / {row['train_steps']} = {grads / row['train_steps']:.3f} | {acc} |"
            )
    return lines


def _before_table(rows: dict, max_load: float | None) -> list[str]:
    """Whole commands before and after, same sitting: wall, LAP seconds, evaluation seconds."""
    lines = ["| setting | method | before: wall s (load) | LAP s | eval s | × training | after: wall s (load) "
             "| LAP s (solves) | eval s | × training | val acc identical |", "|---" * 11 + "|"]  # fmt: skip
    for name, row in rows.items():
        r, tr = row["results"], row["results"]["train"]
        for method, after in (("fgmt", "fgmt+trajectory"), ("gmt", "gmt")):
            b, a = r.get(f"{method} before"), r[after]
            if b is None:
                continue
            lap, same = a["phases"]["solves"], b["val_acc"] == a["val_acc"]
            lines.append(
                f"| {name} | {after} | {b['wall_s']:.1f} ({b['load_before'][0]}) | {b['lsa_seconds']:.1f} "
                f"| {b['eval_seconds']:.1f} | {_ratio(b, tr, max_load)} | {a['wall_s']:.1f} ({a['load_before'][0]}) "
                f"| {a['lsa_seconds']:.1f} ({lap:.1f}) | {a['phases']['evaluation']:.1f} | {_ratio(a, tr, max_load)} "
                f"| {same} |"
            )
    return lines if len(lines) > 2 else []


def _phase_table(rows: dict) -> list[str]:
    lines = ["| setting | method | " + " | ".join(PHASES) + " | other | wall |", "|---" * (len(PHASES) + 4) + "|"]
    for name, row in rows.items():
        for job in JOBS[1:]:
            j = row["results"][job]
            cells = " | ".join(f"{j['phases'][k]:.2f}" for k in (*PHASES, "other"))
            lines.append(f"| {name} | {job} | {cells} | {j['wall_s']:.1f} |")
    return lines


BEGIN, END = "<!-- bench:begin (bench/transfer_cost.py rewrites this part) -->", "<!-- bench:end -->"
_RAW = "<!-- raw results, read back by --only -->"


def _read_rows(path: Path) -> dict:
    """The rows already in the report, so ``--only`` re-measures one setting and keeps the rest."""
    if not path.exists() or _RAW not in path.read_text():
        return {}
    block = path.read_text().split(_RAW, 1)[1].split("```json", 1)[1].split("```", 1)[0]
    rows = json.loads(block)
    return {k: v for k, v in rows.items() if all(j in v.get("results", {}) for j in JOBS)}


def render(rows: dict, max_load: float | None) -> str:
    """The generated part of the page: the ratio table, the phase table and the raw results."""
    limit = f"below {max_load}" if max_load is not None else "whatever it was (no --max-load)"
    return "\n".join([
        BEGIN, "", f"Each job started with the 1-minute load average {limit}; the load beside each time is the one "
        "it started at. Floor: gradients + evaluations + solves of that run.", "", *_table(rows, max_load), "",
        "Time per phase (seconds, from each run's `results.json`; `other` is what falls between them):", "",
        *_phase_table(rows), "", *(["Before and after (`--before REV`: that revision's code, default outputs, so "
        "the trajectory is written; LAP s: the assignment solves alone, and in brackets the solves phase, cost "
        "matrices included):", "", *_before_table(rows, max_load), ""]
        if _before_table(rows, max_load) else []), _RAW, "", "```json", json.dumps(rows, indent=1), "```", "", END,
    ])  # fmt: skip


def write_page(out: Path, generated: str) -> None:
    """Replace the generated part of ``out`` (between the markers), keeping the prose around it."""
    text = out.read_text() if out.exists() else f"# Transfer cost\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text or END not in text:
        text = text.rstrip() + f"\n\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    out.write_text(head + generated + rest.split(END, 1)[1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="small settings (a few minutes)")
    p.add_argument("--only", default=None, help="comma-separated setting names")
    p.add_argument("--out", default=None, help="report (default docs/results/transfer_cost.md; none with --quick)")
    p.add_argument("--max-load", type=float, default=1.0, help="start each job below this 1-minute load (0: never wait)")
    p.add_argument("--wait", type=float, default=900, help="seconds to wait for that load before each job")
    p.add_argument("--before", default=None, help="also run FGMT and GMT with the code of this git revision")
    args = p.parse_args(argv)
    settings = QUICK if args.quick else SETTINGS
    if args.only:
        settings = {k: v for k, v in settings.items() if k in args.only.split(",")}
    out = Path(args.out) if args.out else (None if args.quick else ROOT / "docs" / "results" / "transfer_cost.md")
    max_load = args.max_load or None
    rows = _read_rows(out) if out is not None and args.only else {}
    for name, cfg in settings.items():
        print(name, flush=True)
        rows[name] = {**measure(cfg, (max_load, args.wait), args.before), "bench": "bench/transfer_cost.py "
                      + " ".join(argv if argv is not None else sys.argv[1:]), "cpus": os.cpu_count()}  # fmt: skip
        if out is not None:  # after every setting: a later failure keeps what was measured
            write_page(out, render(rows, max_load))
    print("\n".join(_table(rows, max_load)))
    if out is not None:
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

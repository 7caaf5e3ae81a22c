"""The assignment solves of a real transfer run, captured, then solved again by this checkout and by a
revision before it, in order and warm-started as the engine does.

``bench/solvers.py warm`` measures five synthetic FGMT costs (two random inits). The matrices that
matter are those of a real run on a trained source, and they are harder (the first sparse core
misses more often). Two steps:

1. ``capture``: runs ``transfer run`` in this process with the engine's LAP call wrapped, so that
   every cost matrix it solves is saved as it was handed over (``a_K.npy``, float32 as the matcher
   builds it) with the engine's answer (``cols_K.npy``). Arguments after ``--`` go to
   ``transfer run`` unchanged.
2. ``solve``: the captured sequence solved in order through ``CoordinateDescent._lsa`` (the
   engine's call: conversion, finiteness check, solver, its proofs), each warm from the one before,
   with this checkout's code and, with ``--before REV``, with that revision's (its files read from
   git into a temporary folder, in a subprocess). Wall and CPU seconds per solve, the solver, rounds and
   violations of each certificate, and whether the assignment equals the engine's and, with
   ``--check``, scipy's. Writes ``docs/results/lap_sequences.md`` (``--out``) with the raw JSON.

    .venv/bin/python bench/lap_sequences.py capture --out /tmp/seq/fgmt -- --source RUN \\
        --target-init 102 --T 5 --schedule cosine --grad-batches 20 --method fgmt --out /tmp/seq/run_fgmt
    .venv/bin/python bench/lap_sequences.py solve /tmp/seq/fgmt /tmp/seq/gmt --before 112d688 --check
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "results" / "lap_sequences.md"


def capture(out: Path, transfer_args: list[str]) -> int:
    """``transfer run transfer_args`` with every LAP matrix and answer saved under ``out``."""
    sys.path.insert(0, str(ROOT))
    import transfer.descent as descent

    out.mkdir(parents=True, exist_ok=False)
    solve, count = descent.solve_lap_result, [0]

    def saving(a, warm=None, certify=False):
        count[0] += 1
        np.save(out / f"a_{count[0]}.npy", a)
        res = solve(a, warm, certify)
        np.save(out / f"cols_{count[0]}.npy", res.cols)
        return res

    descent.solve_lap_result = saving
    from zoo.cli.transfer import main

    return main(["run", *transfer_args])


def _solve_here(folder: str, check: bool) -> list[dict]:
    """The sequence in ``folder`` through this interpreter's ``transfer.descent`` (see module doc)."""
    import torch

    from transfer.descent import CoordinateDescent, SolveStats
    from transfer.lap import LapWarm

    class _Stub:  # what _lsa reads of a CoordinateDescent
        certify, stats = False, SolveStats()

    paths = sorted(Path(folder).glob("a_*.npy"), key=lambda p: int(p.stem[2:]))
    warm, rows, proofs = LapWarm(), [], _Stub.stats.proofs
    for path in paths:
        a = torch.from_numpy(np.load(path))
        solves, rounds, violations = dict(proofs.solves), getattr(proofs, "rounds", 0), getattr(proofs, "violations", 0)
        w0, c0 = time.perf_counter(), time.process_time()
        cols = CoordinateDescent._lsa(_Stub, a, warm).numpy()
        row = {"wall_s": round(time.perf_counter() - w0, 3), "cpu_s": round(time.process_time() - c0, 3),
               "solver": next(k for k, v in proofs.solves.items() if v != solves.get(k, 0)),
               "rounds": getattr(proofs, "rounds", 0) - rounds,
               "violations": getattr(proofs, "violations", 0) - violations}  # fmt: skip
        engine = path.with_name("cols_" + path.stem[2:] + ".npy")
        row["same_as_engine"] = bool((cols == np.load(engine)).all()) if engine.exists() else None
        if check:
            from scipy.optimize import linear_sum_assignment

            m = a.double().numpy()
            ref = linear_sum_assignment(m, maximize=True)[1]
            row["same_as_scipy"] = bool((cols == ref).all())
        rows.append(row)
    return rows


def _solve_at(rev: str, folders: list[str], check: bool) -> dict:
    """``_solve_here`` with revision ``rev``'s code (its files, read from git), in a child process."""
    sys.path.insert(0, str(ROOT))
    from bench.transfer_cost import export_revision

    with tempfile.TemporaryDirectory() as tmp:
        tree = export_revision(rev, Path(tmp) / "tree")
        cmd = [sys.executable, str(Path(__file__).resolve()), "_child", *folders] + (["--check"] if check else [])
        env = {**os.environ, "PYTHONPATH": str(tree)}
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env, cwd=tree).stdout
        return json.loads(out.strip().splitlines()[-1])


def _column(rows: list[dict], key: str) -> str:
    return " / ".join(str(r.get(key, "-")) for r in rows)


def render(results: dict) -> str:
    head = ("| code | wall s per solve | total wall s | total CPU s | solver | rounds | dense violations found | "
            "same as the engine's run | same as scipy |")  # fmt: skip
    lines = ["# The assignment solves of real transfer runs, this checkout against a revision before it", "",
             f"Made by `{results['command']}` on {results['date']} (load average {results['load_avg']}); "
             "the matrices were captured with `bench/lap_sequences.py capture` (commands below). Seconds "
             "per solve through the engine's call (`CoordinateDescent._lsa`: conversion, checks, solver), "
             "each warm from the one before.", ""]  # fmt: skip
    for folder, by_code in results["sequences"].items():
        lines += [f"## `{folder}`", "", head, "|---|---|---|---|---|---|---|---|---|"]
        for code, rows in by_code.items():
            keys = ("wall_s", "solver", "rounds", "violations", "same_as_engine", "same_as_scipy")
            cells = [_column(rows, k) for k in keys]
            total_wall, total_cpu = sum(r["wall_s"] for r in rows), sum(r["cpu_s"] for r in rows)
            lines.append(f"| {code} | {cells[0]} | {total_wall:.2f} | {total_cpu:.2f} | " + " | ".join(cells[1:]) + " |")
        lines.append("")
    lines += [results.get("reading", ""), "", "```json", json.dumps(results, indent=1), "```", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_child":  # run by _solve_at inside the other revision's tree
        check = "--check" in argv
        folders = [a for a in argv[1:] if a != "--check"]
        sys.path.insert(0, os.getcwd())
        print(json.dumps({f: _solve_here(f, check) for f in folders}))
        return 0
    if argv and argv[0] == "capture":
        rest = argv[1:]
        split = rest.index("--") if "--" in rest else len(rest)
        p = argparse.ArgumentParser(prog="lap_sequences.py capture")
        p.add_argument("--out", type=Path, required=True, help="a new folder for the matrices")
        return capture(p.parse_args(rest[:split]).out, rest[split + 1 :])
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("section", choices=["solve"])
    p.add_argument("folders", nargs="+", help="folders written by capture")
    p.add_argument("--before", default=None, help="also solve with this git revision's code")
    p.add_argument("--check", action="store_true", help="compare every assignment with scipy's")
    p.add_argument("--out", type=Path, default=PAGE)
    args = p.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    results = {"command": "bench/lap_sequences.py " + " ".join(argv), "date": time.strftime("%Y-%m-%d %H:%M"),
               "load_avg": [round(x, 2) for x in os.getloadavg()], "sequences": {}}  # fmt: skip
    before = _solve_at(args.before, args.folders, False) if args.before else {}
    for folder in args.folders:
        by_code = {"this checkout": _solve_here(folder, args.check)}
        if args.before:
            by_code[f"before ({args.before})"] = before[folder]
        results["sequences"][folder] = by_code
        print(folder, json.dumps(by_code), flush=True)
    if args.out.exists() and args.out == PAGE:
        old = args.out.read_text()
        if "## Reading" in old:
            results["reading"] = old[old.index("## Reading") : old.index("```json")].strip()
    args.out.write_text(render(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

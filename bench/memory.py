"""Peak memory of FGMT-like accumulation: T gradient pairs added to one Matcher, one solve per step.

Each (pair store, T) runs in its own subprocess, so its peak RSS (``ru_maxrss``) is its own. The job
is what FGMT does per step: the gradients of two inits of ``zoo:resnet20?width=2&in_channels=1`` on
the same real MNIST minibatches, ``matcher.add(target, source)``, then
``solve(init=[prev, "sorted"])``. Reported: the peak above the state after setup (imports, data,
models, the first gradients), and the bytes the matcher holds (``Matcher.held_bytes``).

    OMP_NUM_THREADS=2 .venv/bin/python bench/memory.py            # T = 5 and 40, RAM and files

Writes ``docs/results/memory.md`` (``--out``) with the table, the command and the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODEL = "zoo:resnet20?width=2&in_channels=1"


class _PeakRss:
    """Samples this process's resident set every 5 ms (``/proc/self/statm``): the peak after a point
    in time, which ``ru_maxrss`` cannot give once loading the data set has set its high-water mark."""

    def __init__(self) -> None:
        import threading

        self.peak = self.now()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @staticmethod
    def now() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self.now())

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return max(self.peak, self.now())


def _child(store: str, steps: int, batches: int, model_id: str = MODEL) -> dict:
    sys.path.insert(0, str(ROOT))
    import torch
    import torch.nn.functional as F

    import permgraph
    from transfer.matching import Matcher
    from transfer.pairs import DiskPairs, MemoryPairs
    from zoo.data import load
    from zoo.models import build

    x, y = load("mnist").train
    torch.manual_seed(1)
    source = build(model_id)
    torch.manual_seed(2)
    target = build(model_id)
    spec = permgraph.infer(source, (x[:2],))
    gen = torch.Generator().manual_seed(0)

    def gradient(model, idx):
        model.zero_grad()
        for rows in idx:
            F.cross_entropy(model(x[rows]), y[rows]).div(len(idx)).backward()
        return {k: p.grad.detach().clone() for k, p in model.named_parameters()}

    idx = torch.randint(len(x), (batches, 64), generator=gen)
    first = (gradient(target, idx), gradient(source, idx))
    base = _PeakRss.now()
    sampler = _PeakRss()
    matcher = Matcher(spec, pairs=DiskPairs() if store == "files" else MemoryPairs())
    prev = None
    t0 = time.perf_counter()
    for t in range(steps):
        pair = first if t == 0 else None
        if pair is None:
            idx = torch.randint(len(x), (batches, 64), generator=gen)
            pair = (gradient(target, idx), gradient(source, idx))
        matcher.add(*pair)
        del pair
        prev = matcher.solve(init=[prev, "sorted"] if prev is not None else "sorted", seed=t)
    pair_bytes = sum(v.numel() * v.element_size() for v in first[0].values()) * 2
    peak = sampler.stop()
    return {
        "store": store,
        "T": steps,
        "seconds": round(time.perf_counter() - t0, 1),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "peak_above_setup_mib": round((peak - base) / 2**20, 1),
        "held_mib": round(matcher.held_bytes / 2**20, 1),
        "pair_mib": round(pair_bytes / 2**20, 2),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", default="5,40")
    p.add_argument("--batches", type=int, default=4, help="minibatches of 64 per gradient")
    p.add_argument("--model", default=MODEL, help=f"model id (default {MODEL})")
    p.add_argument("--out", default=str(ROOT / "docs" / "results" / "memory.md"))
    p.add_argument("--child", nargs=2, default=None, help=argparse.SUPPRESS)
    p.add_argument("--rows", default=None, help="render these rows (one JSON object a line, as --child prints them)")
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps({**_child(args.child[0], int(args.child[1]), args.batches, args.model), "model": args.model}))
        return 0
    load_start = [round(v, 2) for v in os.getloadavg()]
    rows = []
    if args.rows:  # rows measured by separate --child runs
        rows = [json.loads(line) for line in Path(args.rows).read_text().splitlines() if line.strip()]
    for store in ("RAM", "files") if not args.rows else ():
        for steps in [int(s) for s in args.steps.split(",")]:
            cmd = [sys.executable, __file__, "--child", store, str(steps), "--batches", str(args.batches),
                   "--model", args.model]  # fmt: skip
            out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT)
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(rows[-1], flush=True)
    load_end = [round(v, 2) for v in os.getloadavg()]
    command = "bench/memory.py " + " ".join(argv if argv is not None else sys.argv[1:])
    lines = [
        "# Memory of FGMT-like accumulation: coupled pairs in RAM or in files",
        "",
        f"Made by `{command.strip()}` on {time.strftime('%Y-%m-%d %H:%M')} "
        f"(2 shared CPU cores; load average {load_start} at the start, {load_end} at the end).",
        "",
        f"Model `{args.model}`, real MNIST minibatches ({args.batches} x 64 per gradient), two random inits; per step: "
        "`matcher.add(target_grad, source_grad)` then `solve(init=[prev, \"sorted\"])`, as FGMT does. One subprocess "
        "per row; peak RSS is `ru_maxrss` (set by loading MNIST), \"above setup\" is the peak of the resident set, "
        "sampled every 5 ms, above its size after imports, data, models and the first gradients. \"held\" is "
        "`Matcher.held_bytes` at the end: local costs, cached terms and pairs resident in RAM.",
        "",
        "| pairs kept in | T | process peak RSS MiB | peak above setup MiB | held by matcher MiB | one pair (all "
        "gradients) MiB | seconds |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['store']} | {r['T']} | {r['peak_rss_mib']} | {r['peak_above_setup_mib']} | {r['held_mib']} | "
            f"{r['pair_mib']} | {r['seconds']} |"
        )
    lines += ["", "```json", json.dumps(rows, indent=1), "```", ""]
    Path(args.out).write_text("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

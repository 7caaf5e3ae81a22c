"""LAP solvers and the matcher, measured on the matrices transfer really builds.

Sections (each run alone updates its part of ``docs/results/solvers.json`` and re-renders
``docs/results/solvers.md``):

* ``lap``: scipy, our auction and the PyPI solvers that are installed (lapx, lapjv, OR-Tools) on
  (a) mlp2 width 4096 FGMT gradient costs (two random inits, real MNIST minibatches), (b) weight
  matching costs of two random-init torchvision resnet50's channel groups of 256..2048 units,
  (c) a 16384-unit low-rank FGMT cost (mlp2 width 16384). Each solve runs in its own subprocess
  with a time limit; "optimal" means the objective equals scipy's within 1e-9 relative.
* ``warm``: FGMT's five consecutive 4096 costs (1..5 gradient pairs) solved in order, each warm
  from the one before as the engine does: ``solve_lap`` (what the engine runs: the structured
  solve, ``transfer.lap_structured``), the exact auction, the certified core solve
  (``transfer.lap_certified``), and the auction followed by certification; ``--check`` compares
  each assignment with scipy's and re-checks every certificate on the dense matrix.
* ``vgg``: one weight-matching solve of two torchvision ``vgg11_bn(num_classes=10)``, with this
  checkout's matcher and with the one of ``--rev`` (read from git, so "before" is reproducible).
* ``init``: planted-permutation recoveries of ``solve()`` from the identity, from "sorted", and from
  both, on torchvision resnet18 and zoo resnet20 (``--seeds`` seeds each).

    OMP_NUM_THREADS=2 .venv/bin/python bench/solvers.py lap
    OMP_NUM_THREADS=1 .venv/bin/python bench/solvers.py warm --check
    OMP_NUM_THREADS=2 .venv/bin/python bench/solvers.py vgg --rev a9d69ea
    OMP_NUM_THREADS=2 .venv/bin/python bench/solvers.py init --seeds 20
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "docs" / "results" / "solvers.json"
CACHE = Path(tempfile.gettempdir()) / "permgraph-bench-solvers"


# ---- the solvers -------------------------------------------------------------------------
def _scipy(a: np.ndarray) -> np.ndarray:
    from transfer import lap

    return lap.scipy_lap(a)


def _auction(a: np.ndarray) -> np.ndarray:
    from transfer.lap import auction_lap

    return auction_lap(a)


def _solve_lap(a: np.ndarray) -> np.ndarray:
    from transfer.lap import solve_lap

    return solve_lap(a)


def _certified(a: np.ndarray) -> np.ndarray:
    """The certified core solve from no prices (core: raw k best per row and column, the identity)."""
    from transfer.lap_certified import certified_solve

    return certified_solve(a).cols


def _structured(a: np.ndarray) -> np.ndarray:
    """The rough auction + certified core (``transfer.lap_structured``), cold."""
    from transfer.lap_structured import structured_solve

    return structured_solve(np.asarray(a, dtype=np.float64)).cols


def _auction_certified(a: np.ndarray) -> np.ndarray:
    """The auction, then its answer made exact and certified from its prices (``certify=True``)."""
    from transfer.lap import auction_solve
    from transfer.lap_certified import certified_solve

    cols, prices = auction_solve(a)
    return certified_solve(a, prices, cols).cols


def _lapx(fn: str, **kw):
    def solve(a: np.ndarray) -> np.ndarray:
        import lap

        out = getattr(lap, fn)(-a, **kw)
        return np.asarray(out[2] if fn == "lapjvc" else out[1])

    return solve


def _lapjv(a: np.ndarray) -> np.ndarray:
    import lapjv

    return np.asarray(lapjv.lapjv(-a, force_doubles=True)[0])


def _ortools(a: np.ndarray) -> np.ndarray:
    """Integer costs, scaled as finely as OR-Tools accepts: it refuses (POSSIBLE_OVERFLOW) when
    |cost| * (n + 1) and its price bounds could leave int64, so the scale halves until it solves."""
    from ortools.graph.python import linear_sum_assignment

    n = a.shape[0]
    m = a - a.min()
    rows, cols = np.repeat(np.arange(n), n), np.tile(np.arange(n), n)
    for bits in range(56, 20, -4):
        scale = (2.0**bits / (n + 1)) / max(float(m.max()), 1e-300)
        solver = linear_sum_assignment.SimpleLinearSumAssignment()
        solver.add_arcs_with_cost(rows, cols, np.rint(-m * scale).astype(np.int64).reshape(-1))
        if solver.solve() == solver.OPTIMAL:
            return np.array([solver.right_mate(i) for i in range(n)])
    raise RuntimeError("OR-Tools did not reach OPTIMAL at any scale")


SOLVERS = {
    "scipy": _scipy,
    "auction": _auction,
    "solve_lap": _solve_lap,
    "certified": _certified,
    "structured": _structured,
    "auction+certify": _auction_certified,
    "lapx.lapjv": _lapx("lapjv", return_cost=True),
    "lapx.lapjvc": _lapx("lapjvc", return_cost=True),
    "lapx.lapjvs": _lapx("lapjvs", prefer_float32=False, jvx_like=False),
    "lapx.lapjvs(f32)": _lapx("lapjvs", jvx_like=False),
    "lapjv": _lapjv,
    "ortools": _ortools,
}
MODULES = {"lapx": "lap", "lapjv": "lapjv", "ortools": "ortools"}


def _installed(solver: str) -> bool:
    mod = MODULES.get(solver.split(".")[0].split("(")[0])
    if mod is None:
        return True
    try:
        importlib.import_module(mod)
    except ImportError:
        return False
    return True


def _child_solve(solver: str, path: str) -> None:
    """Runs in a subprocess: one solve, timed; prints a JSON line."""
    a = np.load(path)
    SOLVERS[solver](np.random.default_rng(0).random((8, 8)))  # imports and first-call set-up, not timed
    t0, c0 = time.perf_counter(), time.process_time()
    p = np.asarray(SOLVERS[solver](a), dtype=np.int64)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    ok = sorted(p.tolist()) == list(range(a.shape[0]))
    print(json.dumps({"seconds": seconds, "cpu": cpu, "objective": float(a[np.arange(len(p)), p].sum()), "valid": ok}))


def _run_child(solver: str, path: Path, limit: float) -> dict:
    cmd = [sys.executable, __file__, "_solve", solver, str(path)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=limit, check=False)
    except subprocess.TimeoutExpired:
        return {"timeout": limit}
    if out.returncode != 0:
        return {"error": (out.stderr.strip().splitlines() or ["?"])[-1][:200]}
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---- the matrices ------------------------------------------------------------------------
def _mlp2_costs(width: int, pairs: list[int], batches: int = 20) -> dict[int, np.ndarray]:
    """The FGMT cost of mlp2's hidden group after ``k`` gradient pairs, for each k in ``pairs``:
    pair t is (target, source) = gradients of two random inits on the same ``batches`` MNIST
    minibatches of 128, summed by the Matcher exactly as FGMT sums them."""
    import torch

    import permgraph
    from transfer.matching import Matcher
    from zoo.data import load
    from zoo.models import build

    data = load("mnist")
    x, y = data.train
    torch.manual_seed(1)
    source = build(f"zoo:mlp2?width={width}")
    torch.manual_seed(2)
    target = build(f"zoo:mlp2?width={width}")
    spec = permgraph.infer(source, (x[:2],))
    (group,) = [g.name for g in spec.free_groups]
    matcher, out, gen = Matcher(spec), {}, torch.Generator().manual_seed(0)
    for t in range(1, max(pairs) + 1):
        idx = torch.randint(len(x), (batches, 128), generator=gen)
        grads = [_gradient(model, x, y, idx) for model in (target, source)]
        matcher.add(*grads)
        if t in pairs:
            ident = permgraph.identity_permutation(spec)
            out[t] = matcher._cost(group, ident).double().numpy()
    return out


def _gradient(model, x, y, idx) -> dict:
    """The mean gradient over the minibatches ``idx`` (one row of indices each), as FGMT takes it."""
    import torch.nn.functional as F

    model.zero_grad()
    for rows in idx:
        F.cross_entropy(model(x[rows]), y[rows]).div(len(idx)).backward()
    return {k: p.grad.detach().clone() for k, p in model.named_parameters()}


def _resnet50_costs(widths: list[int]) -> dict[int, np.ndarray]:
    """Weight-matching cost (other groups at the identity) of the first channel group of each
    width in two random-init torchvision resnet50's."""
    import torch
    import torchvision

    import permgraph
    from transfer.matching import Matcher

    torch.manual_seed(0)
    a = torchvision.models.resnet50()
    torch.manual_seed(1)
    b = torchvision.models.resnet50()
    spec = permgraph.infer(a, (torch.randn(1, 3, 64, 64),))
    m = Matcher(spec).add(a.state_dict(), b.state_dict())
    ident = permgraph.identity_permutation(spec)
    out = {}
    for w in widths:
        name = next(g.name for g in spec.free_groups if g.size == w)
        out[w] = m._cost(name, ident).double().numpy()
    return out


def _vgg_sorted_cost() -> np.ndarray:
    """The sorted-rows start's cost of vgg11_bn's first 4096-unit group (two random inits): sorted
    rows are alike, so this matrix is nearly degenerate, the hard case of the default solve."""
    import torch
    import torchvision

    import permgraph
    from transfer.matching import Matcher

    torch.manual_seed(0)
    a = torchvision.models.vgg11_bn(num_classes=10)
    torch.manual_seed(1)
    b = torchvision.models.vgg11_bn(num_classes=10)
    spec = permgraph.infer(a, (torch.randn(1, 3, 32, 32),))
    return Matcher(spec).add(a.state_dict(), b.state_dict())._sorted_cost("classifier.0.out").double().numpy()


def _matrices(quick: bool, skip: frozenset[str] = frozenset()) -> dict[str, Path]:
    """The cached matrices (made when missing), less ``skip``."""
    CACHE.mkdir(parents=True, exist_ok=True)
    made: dict[str, np.ndarray] = {}
    names = ["mlp2-4096 FGMT 1 pair", "mlp2-4096 FGMT 5 pairs"] + [f"resnet50 WM {w}" for w in (256, 512, 1024, 2048)]
    names += ["vgg11_bn sorted start 4096", "mlp2-16384 FGMT 1 pair"]
    if quick:
        names = ["resnet50 WM 256", "resnet50 WM 512"]
    names = [n for n in names if n not in skip]
    paths = {n: CACHE / (n.replace(" ", "_") + ".npy") for n in names}
    missing = [n for n in names if not paths[n].exists()]
    if any(n.startswith("mlp2-4096") for n in missing):
        costs = _mlp2_costs(4096, [1, 5])
        made.update({"mlp2-4096 FGMT 1 pair": costs[1], "mlp2-4096 FGMT 5 pairs": costs[5]})
    if any(n.startswith("resnet50") for n in missing):
        made.update({f"resnet50 WM {w}": c for w, c in _resnet50_costs([256, 512, 1024, 2048]).items()})
    if "vgg11_bn sorted start 4096" in missing:
        made["vgg11_bn sorted start 4096"] = _vgg_sorted_cost()
    if "mlp2-16384 FGMT 1 pair" in missing:
        made["mlp2-16384 FGMT 1 pair"] = _mlp2_costs(16384, [1])[1]
    for n in missing:
        np.save(paths[n], made[n])
    return paths


def run_lap(quick: bool, limit: float, only: list[str] | None = None, max_n: int | None = None, retry: bool = False) -> dict:
    """Every installed solver on every matrix; the largest matrix only gets the fast candidates.
    ``only``: run just these solvers; ``max_n``: only matrices up to this size, and not the solvers
    that ran out of time on them before (their saved results are kept) unless ``retry``."""
    keep = only is not None or max_n is not None
    old = json.loads(RESULTS.read_text()).get("lap", {}).get("rows", {}) if keep and RESULTS.exists() else {}
    rows = {}
    kept = frozenset(k for k, r in old.items() if max_n is not None and r["n"] > max_n)
    for name, path in _matrices(quick, kept).items():
        n = int(np.load(path, mmap_mode="r").shape[0])
        solvers = [s for s in SOLVERS if _installed(s)]
        if n > 8192:  # the O(n^3) solvers that took > 30 s at 4096 are left out here
            solvers = [s for s in solvers if s in ("scipy", "auction", "solve_lap", "lapx.lapjvc", "lapx.lapjvs(f32)",
                                                   "certified", "auction+certify", "structured")]  # fmt: skip
        res = dict(old.get(name, {}).get("results", {}))
        if only:
            solvers = [s for s in solvers if s in only]
        if max_n is not None and not retry:
            solvers = [s for s in solvers if "timeout" not in res.get(s, {})]
        for s in solvers:
            res[s] = _run_child(s, path, limit * (4 if n > 8192 else 1))
            print(name, s, res[s], flush=True)
        ref = res.get("scipy", {}).get("objective")
        for r in res.values():
            if ref is not None and "objective" in r:
                r["optimal"] = bool(r["valid"] and abs(r["objective"] - ref) <= 1e-9 * abs(ref))
        rows[name] = {"n": n, "results": res}
    return {**rows, **{k: old[k] for k in kept}}


# ---- consecutive FGMT solves, warm-started -----------------------------------------------
def _sequence(steps: int = 5) -> list[Path]:
    """mlp2-4096's FGMT costs after 1..steps gradient pairs (each the previous one plus a pair)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    paths = [CACHE / f"mlp2-4096_FGMT_seq_{t}.npy" for t in range(1, steps + 1)]
    if not all(p.exists() for p in paths):
        for t, c in _mlp2_costs(4096, list(range(1, steps + 1))).items():
            np.save(paths[t - 1], c)
    return paths


def run_warm(check: bool) -> dict:
    """Each solver over the sequence in order, as the engine calls it: ``solve_lap`` with a
    ``LapWarm`` (the engine's call), the exact auction from the previous solve's assignment and
    prices, the certified solve from the previous solve's duals (its first solve from a cold
    auction's prices), and the warm auction followed by certification (``certify=True``). CPU
    seconds per solve, one thread; ``check``: compare with scipy, and recheck each certificate."""
    import torch

    from transfer.lap import LapWarm, auction_solve, scipy_lap, solve_lap_result
    from transfer.lap_certified import TOL, certified_solve, check_duals

    torch.set_num_threads(1)
    mats = [np.load(p) for p in _sequence()]
    ref = [scipy_lap(a) for a in mats] if check else None
    out: dict[str, dict] = {}
    for name in ("solve_lap (warm)", "auction (warm)", "certified (warm)", "auction (warm) + certify"):
        warm, prev, row = LapWarm(), None, {"cpu_s": [], "rounds": [], "first_round_violations": [], "same_as_scipy": []}
        for t, a in enumerate(mats):
            c0 = time.process_time()
            sol = cert = None
            if name == "solve_lap (warm)":
                res = solve_lap_result(a, warm)
                cols, cert = res.cols, res.certificate
                row.setdefault("solvers", []).append(res.solver)
            elif name == "certified (warm)" and prev is not None:
                sol = certified_solve(a, prev.v, prev.cols)
            else:
                cols, prices = auction_solve(a, warm if warm.fits(len(a)) else None)
                warm.cols, warm.prices = cols, prices
                sol = certified_solve(a, prices, cols) if name != "auction (warm)" else None
            row["cpu_s"].append(round(time.process_time() - c0, 3))
            if sol is not None:
                prev, cols, cert = sol, sol.cols, sol.certificate
            if cert is not None:
                row["rounds"].append(cert.rounds)
                row["first_round_violations"].append(cert.violations[0])
            if ref is not None:
                row["same_as_scipy"].append(bool((cols == ref[t]).all()))
            if check and name == "solve_lap (warm)" and cert is not None:  # the certificate, recomputed here
                u = a[np.arange(len(cols)), cols] - warm.prices[cols]
                worst, _ = check_duals(a, cols, u, warm.prices)
                assert worst <= TOL * float(a.max() - a.min()), f"certificate fails on matrix {t + 1}"
        row["total_cpu_s"] = round(sum(row["cpu_s"]), 2)
        out[name] = row
        print(name, row, flush=True)
    return out


# ---- the matcher: vgg11_bn ---------------------------------------------------------------
def _matcher_at(rev: str | None):
    """transfer.matching of this checkout, or of git revision ``rev`` (with its lap / pairs)."""
    if rev is None:
        return importlib.import_module("transfer.matching")
    folder = Path(tempfile.mkdtemp(prefix="permgraph-rev-")) / "transfer_rev"
    folder.mkdir()
    (folder / "__init__.py").write_text("")
    for mod in ("matching", "lap", "pairs"):
        src = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:transfer/{mod}.py"], capture_output=True, text=True)
        if src.returncode == 0:
            text = src.stdout.replace("from transfer.lap", "from transfer_rev.lap")
            text = text.replace("from transfer.pairs", "from transfer_rev.pairs")
            (folder / f"{mod}.py").write_text(text)
    sys.path.insert(0, str(folder.parent))
    return importlib.import_module("transfer_rev.matching")


def run_vgg(rev: str | None, inits: list[str]) -> dict:
    import torch
    import torchvision

    import permgraph

    mod = _matcher_at(rev)
    torch.manual_seed(0)
    a = torchvision.models.vgg11_bn(num_classes=10)
    torch.manual_seed(1)
    b = torchvision.models.vgg11_bn(num_classes=10)
    spec = permgraph.infer(a, (torch.randn(1, 3, 32, 32),))
    out = {}
    for init in inits:
        arg = {"identity": None, "sorted": "sorted", "both": [None, "sorted"]}[init]
        m = mod.Matcher(spec).add(a.state_dict(), b.state_dict())
        t0, c0 = time.perf_counter(), time.process_time()
        perm = m.solve(init=arg)
        s = m.stats
        out[init] = {
            "seconds": round(time.perf_counter() - t0, 1),
            "cpu_seconds": round(time.process_time() - c0, 1),
            "sweeps": s.sweeps,
            "lsa_calls": s.lsa_calls,
            "lsa_seconds": round(s.lsa_seconds, 1),
            "cost_seconds": round(s.cost_seconds, 1),
            "objective": s.objective,
            "perm_digest": _digest(perm),
        }
        print(rev or "HEAD+worktree", init, out[init], flush=True)
    return out


def _digest(perm: dict) -> str:
    import hashlib

    h = hashlib.sha1()
    for k in sorted(perm):
        h.update(k.encode())
        h.update(perm[k].numpy().tobytes())
    return h.hexdigest()[:12]


# ---- the matcher: default init on residual nets ------------------------------------------
def run_init(seeds: int) -> dict:
    import torch
    import torchvision

    import permgraph
    from transfer.matching import Matcher
    from zoo.models import build

    nets = {
        "torchvision resnet18": (lambda: torchvision.models.resnet18(), (torch.randn(1, 3, 32, 32),)),
        "zoo resnet20": (lambda: build("zoo:resnet20?width=1"), (torch.randn(2, 3, 8, 8),)),
    }
    out = {}
    for net, (make, inputs) in nets.items():
        spec = permgraph.infer(make(), inputs)
        hits = {"identity": 0, "sorted": 0, "both": 0, "default": 0}
        worse = {"sorted vs identity": 0}
        for seed in range(seeds):
            torch.manual_seed(seed)
            source = make().state_dict()
            planted = permgraph.random_permutation(spec, torch.Generator().manual_seed(2000 + seed))
            m = Matcher(spec).add(permgraph.apply(spec, planted, source), source)
            objs = {}
            for label, init in (("identity", None), ("sorted", "sorted"), ("both", [None, "sorted"]), ("default", ...)):
                perm = m.solve(seed=seed) if init is ... else m.solve(init=init, seed=seed)
                objs[label] = m.stats.objective
                hits[label] += all(torch.equal(perm[g], planted[g]) for g in planted)
            worse["sorted vs identity"] += objs["sorted"] < objs["identity"] - 1e-7 * abs(objs["identity"])
        out[net] = {"seeds": seeds, "recovered": hits, "sorted start worse than identity": worse["sorted vs identity"]}
        print(net, out[net], flush=True)
    return out


# ---- the page ----------------------------------------------------------------------------
def _fmt(r: dict) -> str:
    if "timeout" in r:
        return f"> {r['timeout']:.0f} s wall"
    if "error" in r:
        return "error"
    mark = "" if r.get("optimal", True) else " **not optimal**"
    return f"{r['cpu']:.2f}{mark}"


def _warm_table(data: dict) -> list[str]:
    lines = ["| solver | CPU s per solve (1..5 pairs) | total | rounds | first-round violations | same as scipy |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for name, r in data.items():
        same = "all" if r["same_as_scipy"] and all(r["same_as_scipy"]) else str(r["same_as_scipy"] or "-")
        lines.append(f"| {name} | {' / '.join(f'{x:.2f}' for x in r['cpu_s'])} | {r['total_cpu_s']:.2f} | "
                     f"{' / '.join(map(str, r['rounds'])) or '-'} | "
                     f"{' / '.join(map(str, r['first_round_violations'])) or '-'} | {same} |")  # fmt: skip
    return lines


def render(results: dict) -> str:
    lines = [
        "# LAP solvers and the matcher, on transfer's own matrices",
        "",
        "Made by `bench/solvers.py` (2 shared CPU cores, no GPU); each section's command, date and load average are",
        "with it. The machine is shared with other work: wall times under load are upper bounds.",
        "",
    ]
    lap = results.get("lap")
    if lap:
        solvers = list(dict.fromkeys(s for row in lap["rows"].values() for s in row["results"]))
        lines += [
            "## Solvers",
            "",
            f"`{lap['command']}` on {lap['date']}, load average {lap['load_avg']}. CPU seconds per solve (one run each, in "
            "its own single-threaded process: CPU time is the solver's work, wall time doubled under the load of other "
            "jobs); a solve is stopped after `--limit` wall seconds; **not optimal**: objective differs from scipy's by "
            "more than 1e-9 relative.",
            "",
            "| matrix | n | " + " | ".join(solvers) + " |",
            "|---|---|" + "---|" * len(solvers),
        ]
        for name, row in lap["rows"].items():
            cells = [_fmt(row["results"][s]) if s in row["results"] else "-" for s in solvers]
            lines.append(f"| {name} | {row['n']} | " + " | ".join(cells) + " |")
        lines += ["", lap.get("reading", ""), ""]
    for key in ("warm", "vgg", "init"):
        sec = results.get(key)
        if sec:
            lines += [f"## {sec['title']}", "", f"`{sec['command']}` on {sec['date']}, load average {sec['load_avg']}.", ""]
            lines += _warm_table(sec["data"]) if key == "warm" else ["```json", json.dumps(sec["data"], indent=1), "```"]
            lines += ["", sec.get("reading", ""), ""]
    return "\n".join(lines).rstrip() + "\n"


def _save(key: str, entry: dict) -> None:
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    old = results.get(key, {})
    entry.setdefault("reading", old.get("reading", ""))
    if key == "vgg" and isinstance(old.get("data"), dict):  # runs of other starts add to the table
        merged = {label: dict(runs) for label, runs in old["data"].items()}
        for label, runs in entry["data"].items():
            merged.setdefault(label, {}).update(runs)
        entry["data"] = merged
        entry["command"] = "; ".join(dict.fromkeys([*old.get("command", "").split("; "), entry["command"]]))
    results[key] = entry
    RESULTS.write_text(json.dumps(results, indent=1) + "\n")
    RESULTS.with_suffix(".md").write_text(render(results))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_solve":
        _child_solve(argv[1], argv[2])
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("section", choices=["lap", "warm", "vgg", "init", "render"])
    p.add_argument("--check", action="store_true", help="warm: compare every assignment with scipy's")
    p.add_argument("--quick", action="store_true", help="lap: two small matrices only")
    p.add_argument("--limit", type=float, default=240.0, help="lap: seconds per solve (x4 at n > 8192)")
    p.add_argument("--solvers", default=None, help="lap: only these (comma-separated), merged into the table")
    p.add_argument("--max-n", type=int, default=None, help="lap: rerun matrices up to this size, keep the rest")
    p.add_argument("--retry", action="store_true", help="lap: with --max-n, rerun the solvers that timed out there before")
    p.add_argument("--rev", default=None, help="vgg: also measure the matcher of this git revision")
    p.add_argument("--inits", default="identity,both", help="vgg: starts to time, comma-separated")
    p.add_argument("--seeds", type=int, default=20, help="init: planted seeds per net")
    args = p.parse_args(argv)
    stamp = {
        "command": "bench/solvers.py " + " ".join(argv),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "load_avg": [round(x, 2) for x in os.getloadavg()],
    }
    if args.section == "lap":
        only = args.solvers.split(",") if args.solvers else None
        rows = run_lap(args.quick, args.limit, only, args.max_n, args.retry)
        if (only or args.max_n) and RESULTS.exists():
            stamp["command"] = json.loads(RESULTS.read_text())["lap"]["command"] + "; " + stamp["command"]
        _save("lap", {**stamp, "rows": rows})
    elif args.section == "warm":
        title = "Consecutive FGMT solves (mlp2-4096, 1..5 pairs), warm-started as in the engine"
        _save("warm", {**stamp, "title": title, "data": run_warm(args.check)})
    elif args.section == "vgg":
        inits = args.inits.split(",")
        data = {"after (this checkout)": run_vgg(None, inits)}
        if args.rev:
            data[f"before ({args.rev})"] = run_vgg(args.rev, inits)
        _save("vgg", {**stamp, "title": "vgg11_bn weight matching, one solve", "data": data})
    elif args.section == "init":
        _save("init", {**stamp, "title": "Default start on planted residual nets", "data": run_init(args.seeds)})
    else:
        RESULTS.with_suffix(".md").write_text(render(json.loads(RESULTS.read_text())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

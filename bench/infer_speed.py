"""Trace + infer time for resnet50, vit_b_16, BERT-base and GPT-2-size configs.

    .venv/bin/python bench/infer_speed.py            # writes docs/results/infer_speed.md

"cold" is the first ``permgraph.infer`` call in a fresh process (torch and the model
already imported and built: torch.export pays its one-time set-up here); "warm" is the
median of the next three calls on a fresh model instance. Each model runs in its own process.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

MODELS = {
    "resnet50": "torchvision resnet50, 1×3×224×224",
    "vit_b_16": "torchvision vit_b_16, 1×3×224×224",
    "bert-base": "HF BertModel, 12 layers × 768, 12 heads, 1×128 tokens",
    "gpt2-small": "HF GPT2LMHeadModel, 12 layers × 768, 12 heads, 1×128 tokens",
}


def build(name: str):
    import torch

    if name in ("resnet50", "vit_b_16"):
        import torchvision

        return torchvision.models.get_model(name, weights=None), (torch.randn(1, 3, 224, 224),), {}
    import transformers as T

    ids = torch.randint(0, 1000, (1, 128))
    if name == "bert-base":
        return T.BertModel(T.BertConfig()), (ids,), {}
    return T.GPT2LMHeadModel(T.GPT2Config()), (ids,), {"use_cache": False}


def child(name: str) -> None:
    import torch

    import permgraph

    torch.manual_seed(0)
    times = []
    for _ in range(4):
        model, args, kwargs = build(name)
        t0 = time.perf_counter()
        spec, analysis = permgraph.infer(model, args, kwargs, return_analysis=True)
        times.append((time.perf_counter() - t0, analysis.seconds["trace"], analysis.seconds["infer"]))
    print(json.dumps({"model": name, "cold": times[0], "warm": statistics.median(t[0] for t in times[1:]),
                      "warm_infer": statistics.median(t[2] for t in times[1:]),
                      "free_groups": len(spec.free_groups)}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    if args.child:
        child(args.child)
        return
    rows = []
    for name in MODELS:
        out = subprocess.run([sys.executable, __file__, "--child", name], capture_output=True, text=True,
                             cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
        line = [x for x in out.stdout.splitlines() if x.startswith("{")]
        if not line:
            print(name, "FAILED", out.stderr[-500:])
            continue
        row = json.loads(line[-1])
        rows.append(row)
        print(f"{name:12s} cold {row['cold'][0]:.2f} s (trace {row['cold'][1]:.2f} + infer {row['cold'][2]:.3f}) "
              f"warm {row['warm']:.2f} s (infer part {row['warm_infer']:.3f} s), {row['free_groups']} free groups")
    if args.no_write or not rows:
        return
    lines = ["# Trace + infer speed", "",
             f"Command: `.venv/bin/python bench/infer_speed.py` ({time.strftime('%Y-%m-%d')}, {platform.machine()}, "
             "2 cores, CPU, torch default threads). cold = first `permgraph.infer` in a fresh process (model built, "
             "torch imported); warm = median of the next 3 calls on fresh instances.", "",
             "| model | setting | cold s (trace + infer) | warm s | of which infer s | free groups |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {MODELS[r['model']]} | {r['cold'][0]:.2f} ({r['cold'][1]:.2f} + "
                     f"{r['cold'][2]:.3f}) | {r['warm']:.2f} | {r['warm_infer']:.3f} | {r['free_groups']} |")
    out = ROOT / "docs" / "results" / "infer_speed.md"
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

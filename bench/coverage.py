"""Coverage: infer + verify over every torchvision classification model and a list of timm
and Hugging Face models. Each model runs in its own process (a crash or hang in one cannot
take the others down) with a time limit.

    .venv/bin/python bench/coverage.py                 # everything, writes docs/results/coverage.md
    .venv/bin/python bench/coverage.py --only resnet18 vit_b_16 --no-write

Columns: free groups, permuted / total state-dict tensors, verify result (max |Δ| relative
to max |output|, float64, trained-like random values), trace and infer seconds.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BIG = {  # left out: too large for 2 cores / 24 GiB (the same 16 as in the tool comparison)
    "regnet_y_128gf", "vit_h_14", "regnet_y_32gf", "regnet_x_32gf", "vit_l_16", "vit_l_32",
    "efficientnet_b7", "efficientnet_b6", "efficientnet_v2_l", "resnext101_64x4d", "regnet_y_16gf",
    "regnet_x_16gf", "convnext_large", "swin_v2_b", "swin_b", "wide_resnet101_2",
}
TIMM = ["timm:vit_tiny_patch16_224", "timm:convnext_atto", "timm:resnet18", "timm:efficientnet_b0",
        "timm:deit_tiny_patch16_224", "timm:mobilenetv3_small_100", "timm:regnetx_002"]
HF = ["hf:bert", "hf:gpt2", "hf:llama", "hf:vit"]


def build(name: str):
    import torch

    if name.startswith("timm:"):
        import timm

        model = timm.create_model(name[5:], pretrained=False)
        size = model.default_cfg.get("input_size", (3, 224, 224))
        return model, (torch.randn(1, *size),), {}
    if name.startswith("hf:"):
        import transformers as T

        kind = name[3:]
        ids = torch.randint(0, 100, (2, 8))
        if kind == "bert":
            cfg = T.BertConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                               intermediate_size=128, vocab_size=100)
            return T.BertModel(cfg), (ids,), {}
        if kind == "gpt2":
            cfg = T.GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=100, n_positions=32)
            return T.GPT2LMHeadModel(cfg), (ids,), {"use_cache": False}
        if kind == "llama":
            cfg = T.LlamaConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                num_key_value_heads=2, intermediate_size=128, vocab_size=100,
                                max_position_embeddings=32)
            return T.LlamaForCausalLM(cfg), (ids,), {"use_cache": False}
        if kind == "vit":
            cfg = T.ViTConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                              intermediate_size=128, image_size=32, patch_size=8, num_labels=10)
            return T.ViTForImageClassification(cfg), (torch.randn(1, 3, 32, 32),), {}
        raise ValueError(name)
    import torchvision

    kw = {"aux_logits": False, "init_weights": False} if name in ("googlenet", "inception_v3") else {}
    model = torchvision.models.get_model(name, weights=None, **kw)
    size = 224 if name.startswith(("vit", "swin", "maxvit")) else 299 if name == "inception_v3" else 64
    return model, (torch.randn(1, 3, size, size),), {}


def measure(name: str, queue) -> None:
    import torch

    import permgraph

    torch.set_num_threads(1)
    torch.manual_seed(0)
    row = {"model": name}
    try:
        model, args, kwargs = build(name)
        spec, analysis = permgraph.infer(model, args, kwargs, name=name, return_analysis=True)
        row.update(
            free_groups=len(spec.free_groups),
            permuted=len(spec.permuted_params),
            tensors=len(model.state_dict()),
            trace_s=analysis.seconds["trace"],
            infer_s=analysis.seconds["infer"],
            unknown_ops=analysis.unknown_ops,
        )
        report = permgraph.verify(model, spec, args, kwargs, control=True)
        scale = max(report.max_abs_output, 1e-30)
        row.update(ok=report.ok, rel_diff=report.max_abs_diff / scale,
                   control=(report.control_diff or 0.0) / scale)
    except Exception as e:  # report and go on: one model must not stop the table
        row.update(error=f"{type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''}")
    queue.put(row)


def run_one(name: str, timeout: float) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=measure, args=(name, queue))
    proc.start()
    proc.join(timeout)
    if proc.is_alive():
        proc.kill()
        return {"model": name, "error": f"timeout after {timeout:.0f} s"}
    return queue.get() if not queue.empty() else {"model": name, "error": f"crashed (exit {proc.exitcode})"}


def torchvision_models() -> list[str]:
    import torchvision

    return sorted(set(torchvision.models.list_models(module=torchvision.models)) - BIG)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="*", help="model names (torchvision names, timm:..., hf:bert|gpt2|llama|vit)")
    ap.add_argument("--timeout", type=float, default=240)
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--merge", action="store_true", help="replace only these models' rows in the existing table")
    args = ap.parse_args()
    names = args.only or (torchvision_models() + TIMM + HF)
    rows = []
    for name in names:
        t0 = time.perf_counter()
        row = run_one(name, args.timeout)
        row["wall_s"] = time.perf_counter() - t0
        rows.append(row)
        status = row.get("error") or (("verify OK" if row.get("ok") else f"VERIFY FAILED rel {row.get('rel_diff'):.2e}")
                                      + f" (control {row.get('control', 0):.1e})")
        print(f"{name:32s} groups {row.get('free_groups', '-'):>4} permuted {row.get('permuted', '-')}/"
              f"{row.get('tensors', '-')}  {status}  trace {row.get('trace_s', 0):.2f}s infer {row.get('infer_s', 0):.3f}s",
              flush=True)
    if args.merge:
        fresh = {r["model"]: r for r in rows}
        old_rows = json.loads((ROOT / "docs" / "results" / "coverage.json").read_text())
        rows = [fresh.pop(r["model"], r) for r in old_rows] + list(fresh.values())
    tv = [r for r in rows if ":" not in r["model"]]
    good = [r for r in tv if r.get("ok") and r.get("free_groups", 0) > 0]
    false_sym = [r["model"] for r in rows if r.get("ok") is False]
    summary = (f"torchvision: {len(good)}/{len(tv)} models verify with at least one free group; "
               f"models whose spec failed verify (false symmetries): {len(false_sym)} {false_sym}")
    print(summary)
    if args.no_write:
        return
    lines = [
        "# Coverage: infer + verify",
        "",
        f"Command: `.venv/bin/python bench/coverage.py` ({time.strftime('%Y-%m-%d')}, {platform.machine()}, "
        "2 cores, 1 torch thread per model). Input 1×3×64×64 (224 for ViT/Swin/MaxViT, 299 for Inception); "
        "HF models at tiny configs. verify: every free group permuted at random at once, float64, "
        "trained-like random parameters and BN statistics; rel Δ = max|Δ output| / max|output|. "
        "control = the same with one tie broken on purpose (the first free group permuted in one tensor "
        "only): it must be far above rel Δ, or verify would prove nothing.",
        "",
        f"**{summary}**",
        "",
        "| model | free groups | permuted / tensors | verify | rel Δ | control | trace s | infer s | ops without a rule |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['model']} | – | – | error: {r['error']} | | | | | |")
            continue
        lines.append(
            f"| {r['model']} | {r['free_groups']} | {r['permuted']}/{r['tensors']} | "
            f"{'ok' if r.get('ok') else 'FAILED'} | {r.get('rel_diff', float('nan')):.1e} | "
            f"{r.get('control', float('nan')):.1e} | {r['trace_s']:.2f} | "
            f"{r['infer_s']:.3f} | {', '.join(f'{k}×{v}' for k, v in r['unknown_ops'].items()) or ''} |"
        )
    out = ROOT / "docs" / "results" / "coverage.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    (ROOT / "docs" / "results" / "coverage.json").write_text(json.dumps(rows, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

#!/usr/bin/env bash
# One script for a lent GPU (the device tool), under 10 minutes on one H200: the device check, then
# the GPU-scale experiments shortened to fit (20 of Conv8's 60 epochs; one ResNet seed pair).
# Results go to docs/results/gpu/ (and $OUT when the device tool sets it), never over the CPU pages.
#   bash bench/device_run.sh
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT_DIR=${OUT:-docs/results/gpu}
mkdir -p docs/results/gpu "$OUT_DIR"
export PYTHONUNBUFFERED=1
timeout 180 "$PY" bench/gpu_check.py --out docs/results/gpu/gpu_check.md
timeout 240 "$PY" -m zoo.experiments conv8 --config configs/conv8_fashion_gpu.toml --device cuda \
    --docs docs/results/gpu --set train.epochs=20 --no-progress
timeout 150 "$PY" -m zoo.experiments resnet_pretrained --config configs/resnet_pretrained_gpu.toml --device cuda \
    --docs docs/results/gpu --set 'seeds=[[101, 102]]' --set 'head_seeds=[[1101, 1102]]' --no-progress
cp docs/results/gpu/* "$OUT_DIR"/ 2>/dev/null || true

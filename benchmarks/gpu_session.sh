#!/usr/bin/env bash
# Every GPU check of the project in one prepared run, for a session that is lent a CUDA device:
#   1. the unit tests on the GPU-capable install (they force the CPU where they compare exact histories);
#   2. the throughput benchmark on CUDA (plain loop, single model, compiled single model with CUDA graphs,
#      sweeps of 8 and 16) -> $OUT/bench_cuda.json;
#   3. the paper's experiments at the paper's 200 epochs (python -m vibtools reproduce: table1, k2, beta-sweep)
#      -> $OUT/results/ (commit it as results/), with the run cache in $OUT/runs.
# Usage (from the repository root, MNIST in ../shared/data or $VIBTOOLS_DATA):
#   OUT=/tmp/out bash benchmarks/gpu_session.sh
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-gpu_results}"
mkdir -p "$OUT"
DATA="${VIBTOOLS_DATA:-../shared/data}"
PY="${PY:-python}"
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$OUT/gpu.txt"
"$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.__version__)"
timeout 300 "$PY" benchmarks/bench_train.py --data "$DATA" --device cuda --steps 600 --sweeps 8 16 \
    --compile reduce-overhead --json "$OUT/bench_cuda.json" | tee "$OUT/bench_cuda.txt"
timeout 1800 "$PY" -m vibtools reproduce table1 k2 beta-sweep --epochs 200 --data "$DATA" --device cuda \
    --compile reduce-overhead --results "$OUT/results" --cache "$OUT/runs" --no-progress | tee "$OUT/reproduce.txt"

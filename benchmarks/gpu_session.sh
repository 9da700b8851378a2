#!/usr/bin/env bash
# The paper's 200-epoch protocol (Table 1, K=2, the beta sweep) on a lent GPU, within the device tool's limits:
# one command at most 10 minutes, 15 minutes of device time in all, at most 8 files of 16 MiB back through $OUT,
# a working tree of at most 64 MiB, and no ../shared on the device machine.
#
#   bash benchmarks/gpu_session.sh pack-data
#       here, once: MNIST from $VIBTOOLS_DATA (default ../shared/data) gzipped into $GPU_DIR/data (about 11 MB;
#       $GPU_DIR, default _gpu, is git-ignored, so it travels only when the device call carries it)
#   bash benchmarks/gpu_session.sh run            (device tool: carry=["_gpu/data"], timeout_s=540)
#       there, as often as the time allows: trains for at most BUDGET_S seconds (default 420), stops cleanly
#       (SIGTERM: the last finished epoch is saved), and packs what is finished. The run cache stays in
#       $GPU_DIR/cache on the device machine, which keeps ignored folders between calls while it is held, so the
#       next call resumes; a fresh machine starts the protocol again (finished runs come back in each archive).
#
# $OUT receives three files: results.tar.gz (results/<experiment>/<run>.json of every finished run: unpack it
# in the repository root), session.json (device, torch, this call's time, and the measured throughput of
# every finished pass in model-epochs per second) and log.txt.
# Environment: EPOCHS (200), EXPERIMENTS ("table1 k2 learning-rate beta-sweep"), ONLY (run-name patterns, comma-separated),
# DEVICE (cuda), BUDGET_S (420), PASS (model-epochs per stacked pass, 6000), COMPILE (reduce-overhead on CUDA),
# GPU_DIR (_gpu), PY (python3).
set -euo pipefail
cd "$(dirname "$0")/.."
GPU_DIR="${GPU_DIR:-_gpu}"
PY="${PY:-python3}"
case "${1:-}" in
pack-data)
  src="${VIBTOOLS_DATA:-../shared/data}/MNIST/raw"
  mkdir -p "$GPU_DIR/data/MNIST/raw"
  for f in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
    gzip -9 -n -c "$src/$f" > "$GPU_DIR/data/MNIST/raw/$f.gz.tmp"
    mv "$GPU_DIR/data/MNIST/raw/$f.gz.tmp" "$GPU_DIR/data/MNIST/raw/$f.gz"
  done
  du -sh "$GPU_DIR/data"
  ;;
run)
  : "${OUT:?OUT must name the folder whose files come back}"
  [ -d "$GPU_DIR/data/MNIST/raw" ] || { echo "no $GPU_DIR/data: run '$0 pack-data' here and carry $GPU_DIR/data" >&2; exit 2; }
  DEVICE="${DEVICE:-cuda}"
  if [ "${DEVICE%%:*}" = cuda ]; then COMPILE="${COMPILE-reduce-overhead}"; else COMPILE="${COMPILE-}"; fi
  log="$OUT/log.txt"
  start=$(date +%s)
  { command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; } \
      >"$log" 2>&1 || true
  set +e
  # SIGTERM at the budget: reproduce saves the last finished epoch and exits 143; the next call resumes there.
  # (Not SIGINT: a process started in the background inherits SIGINT ignored, and Python keeps it so.)
  PYTHONUNBUFFERED=1 timeout -s TERM -k 60 "${BUDGET_S:-420}" "$PY" -m vibtools reproduce ${EXPERIMENTS:-table1 k2 learning-rate beta-sweep} \
      --epochs "${EPOCHS:-200}" --device "$DEVICE" --data "$GPU_DIR/data" --results "$GPU_DIR/results" \
      --cache "$GPU_DIR/cache" --pass-model-epochs "${PASS:-6000}" ${ONLY:+--only "$ONLY"} \
      ${COMPILE:+--compile "$COMPILE"} --no-progress >>"$log" 2>&1
  rc=$?
  set -e
  case $rc in
    0) echo "gpu_session: every selected run is finished" | tee -a "$log" ;;
    143|124|137) echo "gpu_session: stopped at the ${BUDGET_S:-420} s budget (rc $rc); the same command resumes" | tee -a "$log" ;;
    *) echo "gpu_session: reproduce failed (rc $rc); see log.txt" | tee -a "$log"; tail -5 "$log" ;;
  esac
  mkdir -p "$GPU_DIR/results"
  tar -czf "$OUT/results.tar.gz" -C "$GPU_DIR" results
  "$PY" benchmarks/gpu_throughput.py "$GPU_DIR/results" --call-seconds "$(( $(date +%s) - start ))" --rc "$rc" \
      --device "$DEVICE" > "$OUT/session.json"
  cat "$OUT/session.json"
  [ "$rc" = 0 ] || [ "$rc" = 143 ] || [ "$rc" = 124 ] || [ "$rc" = 137 ]
  ;;
*)
  echo "usage: $0 pack-data | run   (see the comment at the top)" >&2
  exit 2
  ;;
esac

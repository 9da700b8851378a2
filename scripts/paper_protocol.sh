#!/usr/bin/env bash
# The paper's 200-epoch protocol on this machine, in the order that decides the book's verdicts first:
#   (a) VIB K=256 beta=1e-3 and the deterministic net, seed by seed;  (b) K=2 at beta 1e-1 and 1;
#   (c) dropout, label smoothing, confidence penalty;  (d) K=2 at beta 1e-3 and 1e-2;  (e) the beta sweep.
# Each `reproduce` trains in passes of at most 400 model-epochs (two 200-epoch models), writes each run's
# results file when its pass ends, and resumes an interrupted pass from the run cache, so rerunning this
# script after a stop (or on the next day, with the cache kept) continues where it left off. Niced, so the
# machine stays usable. Usage, from the repository root (a clean checkout, so the records name its commit):
#   OMP_NUM_THREADS=1 nohup setsid bash scripts/paper_protocol.sh [LANE] > paper-protocol.log 2>&1 < /dev/null &
# On a 2-core machine run two lanes, one thread each: lane `a` starts with the VIB runs of (a), then (b) and
# (d); lane `b` with the deterministic runs of (a), then (c). Both then go through the whole list, so neither
# idles while work is left (a run the other lane is training is waited for through its lock, then loaded).
# One thread per process: with two threads a run slowed about threefold whenever other work shared the
# machine (measured: 22 s per epoch alone, 72 s beside the unit tests; one thread: 27 s per epoch).
# Environment: EPOCHS (200), DEVICE (cpu), RESULTS (results), VIBTOOLS_DATA / VIBTOOLS_CACHE as for vibtools.
set -euo pipefail
cd "$(dirname "$0")/.."
EPOCHS="${EPOCHS:-200}"
PY="${PY:-python}"
run() {
  nice -n "${NICE:-10}" "$PY" -m vibtools reproduce "$@" --epochs "$EPOCHS" --device "${DEVICE:-cpu}" \
      --results "${RESULTS:-results}"
}
case "${1:-}" in
  a) run table1 --only 'vib-*'
     run k2 --only '*-beta0.1-*,*-beta1-*'
     run k2 --only '*-beta0.001-*,*-beta0.01-*' ;;
  b) run table1 --only 'deterministic-*'
     run table1 --only 'dropout-*,label-smoothing-*,confidence-penalty-*' ;;
  "") ;;
  *) echo "usage: $0 [a|b]" >&2; exit 2 ;;
esac
run table1 --only 'vib-*,deterministic-*'
run k2 --only '*-beta0.1-*,*-beta1-*'
run table1 --only 'dropout-*,label-smoothing-*,confidence-penalty-*'
run k2 --only '*-beta0.001-*,*-beta0.01-*'
run beta-sweep
echo "paper protocol: every run is stored"

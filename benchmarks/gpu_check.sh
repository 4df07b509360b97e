#!/usr/bin/env bash
# The GPU check (issue 9), one short call on a machine with an NVIDIA GPU (<= 8 minutes):
#   1. the CUDA tests (the chain kernels and the Merkle kernels on torch-cuda / CuPy: the same
#      code paths the CPU tests run; they skip only without a GPU),
#   2. the kernel benchmark (our kernels beside each backend's own library call),
#   3. a full onboarding of this machine against a local stack (channel, Celery worker, Redis,
#      its own SQLite file): the agent detects and claims its GPUs, gets the claimed device's
#      full suite, one job per device run side by side, and the script prints, per device and
#      precision, the server-timed figure beside the same kernel's compute-only figure.
# On a machine without a GPU it runs the same steps with the CUDA tests skipped and the CPU's
# small suite, so it stays working between GPU runs.
#
#   bash benchmarks/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
[ -x "$PY" ] || PY=python3
status=0
step() { echo; echo "== $*"; }

step "devices"
if command -v nvidia-smi >/dev/null && nvidia-smi -L; then
  FULL=--full
else
  echo "no NVIDIA GPU here: CUDA tests skip, the onboarding uses the CPU's small suite"
  FULL=
fi
"$PY" -c "from workers.kernels import available_backends; print('backends:', available_backends())"

step "CUDA tests"
timeout 150 "$PY" -m pytest -q -p no:cacheprovider -rs -k "cuda" \
  tests/verification_sketch/test_chain.py tests/verification_sketch/test_floatgen.py \
  tests/workers/test_kernels.py || status=1

step "kernel benchmark"
timeout 90 "$PY" benchmarks/kernels.py --quick --repeats 2 || status=1

step "onboarding against a local stack: server-timed vs compute-only"
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379/10}"
bash scripts/ensure_redis.sh || status=1
[ -f .run/secret-key ] || bash scripts/local_secret_key.sh >/dev/null
timeout 240 "$PY" benchmarks/server_timed.py $FULL --repeats 2 --timeout 200 || status=1

exit $status

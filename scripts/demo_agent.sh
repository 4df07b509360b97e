#!/usr/bin/env bash
# The `agent` process of `make run`: one demo provider agent on this machine (CPU-sized suites:
# run.sh sets BENCHMARK_SMALL_SUITES). It registers once (the credential is kept in
# .run/agent.json, mode 0600), then runs; a side loop watches the machine through the agent API
# and publishes the demo listing as soon as onboarding has verified it.
set -euo pipefail
cd "$(dirname "$0")/.."
# The agent talks to the agent channel (Procfile `channel`), not to the web site.
URL="http://127.0.0.1:${AGENT_PORT:-8001}"
CONFIG=.run/agent.json
STARTED="${RUN_STARTED_AT:-$(date +%s)}"
for _ in $(seq 300); do curl -sf "$URL/api/v1/health" >/dev/null && break; sleep 0.2; done
# Onboarding measures this machine's throughput, and the listing shows what it measured: start
# it only once the rest of the stack has started (the web site answers, the contracts are
# deployed) and the CPUs are quiet, not while gunicorn, Celery and the deployment are importing
# and compiling on the same cores. Both waits are bounded: a busy machine onboards anyway.
for _ in $(seq 300); do
  curl -sf "http://127.0.0.1:${WEB_PORT:-8000}/api/v1/health" >/dev/null && break
  sleep 0.2
done
for _ in $(seq 120); do [ -e .run/chain-ready ] && break; sleep 0.5; done
cpu_idle_percent() {  # over the next second, from /proc/stat (prints 100 where there is none)
  if [ ! -r /proc/stat ]; then echo 100; return; fi
  read -r _ a b c d e f g h _ </proc/stat
  sleep 1
  read -r _ a2 b2 c2 d2 e2 f2 g2 h2 _ </proc/stat
  local busy=$(((a2 + b2 + c2 + f2 + g2 + h2) - (a + b + c + f + g + h)))
  local idle=$(((d2 + e2) - (d + e)))
  echo $((100 * idle / (busy + idle + 1)))
}
echo "agent: waiting for the machine to be quiet before the onboarding benchmarks"
for _ in $(seq 30); do [ "$(cpu_idle_percent)" -ge 80 ] && break; done
if [ -s "$CONFIG" ]; then
  # Registered on an earlier run: keep the credential, but point it at this run's port, and
  # register afresh if the server no longer knows it (a new database).
  .venv/bin/python - "$CONFIG" "$URL" <<'PY'
import sys
from pathlib import Path
from workers.agent.config import config_load, config_save
path = Path(sys.argv[1])
config = config_load(path)
if config["url"] != sys.argv[2]:
    config_save(path, {**config, "url": sys.argv[2]})
PY
  credential=$(.venv/bin/python -c "import json,sys; print(json.load(open(sys.argv[1]))['credential'])" "$CONFIG")
  code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Token $credential" "$URL/api/v1/agent/machine")
  if [ "$code" = 401 ] || [ "$code" = 403 ]; then
    echo "agent: the saved credential is unknown to this database; registering again"
    rm -f "$CONFIG"
  fi
fi
if [ ! -s "$CONFIG" ]; then
  out=$(.venv/bin/python manage.py demo_provider)
  # Everything but the last line (the one-time registration token) is for the person watching.
  sed '$d' <<<"$out" | sed 's/^/agent: /'
  .venv/bin/python -m workers.agent register --url "$URL" --token "$(tail -1 <<<"$out")" \
    --name demo-cpu --config "$CONFIG"
fi
credential=$(.venv/bin/python -c "import json,sys; print(json.load(open(sys.argv[1]))['credential'])" "$CONFIG")
(
  while sleep 2; do
    state=$(curl -sf -H "Authorization: Token $credential" "$URL/api/v1/agent/machine" |
      .venv/bin/python -c "import json,sys; d=json.load(sys.stdin); print(d['state'], d['state_reason'])" ||
      true)
    case "$state" in
      verified*)
        # Collateral before capacity: the demo provider stakes what the machine needs first.
        if line=$(.venv/bin/python manage.py demo_stake 2>&1 && .venv/bin/python manage.py demo_listing 2>&1); then
          echo "agent: $line ($(($(date +%s) - STARTED)) s after start)"
          echo "agent: the demo machine is in the search: curl http://127.0.0.1:${WEB_PORT:-8000}/api/v1/listings"
          break
        fi
        ;;
      listed*)
        echo "agent: the demo machine is listed: curl $URL/api/v1/listings"
        break
        ;;
      suspended*)
        echo "agent: the demo machine was suspended: ${state#suspended }" >&2
        break
        ;;
    esac
  done
) &
exec .venv/bin/python -m workers.agent run --config "$CONFIG" --no-progress

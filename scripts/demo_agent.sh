#!/usr/bin/env bash
# The `agent` process of `make run`: one demo provider agent on the CPU backend. It registers
# once (the credential is kept in .run/agent.json, mode 0600), then runs; a side loop publishes
# the demo listing as soon as onboarding has verified the machine.
set -euo pipefail
cd "$(dirname "$0")/.."
URL="http://127.0.0.1:${WEB_PORT:-8000}"
CONFIG=.run/agent.json
for _ in $(seq 300); do curl -sf "$URL/api/v1/health" >/dev/null && break; sleep 0.2; done
if [ ! -s "$CONFIG" ]; then
  token=$(.venv/bin/python manage.py demo_provider | tail -1)
  .venv/bin/python -m workers.agent register --url "$URL" --token "$token" --name demo-cpu --config "$CONFIG"
fi
(
  until .venv/bin/python manage.py demo_listing >/dev/null 2>&1; do sleep 3; done
  echo "agent: demo machine verified and listed: $URL/api/v1/listings"
) &
exec .venv/bin/python -m workers.agent run --config "$CONFIG"

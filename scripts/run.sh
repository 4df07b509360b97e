#!/usr/bin/env bash
# `make run`: the whole marketplace on this machine. Ctrl-C (or SIGTERM) stops every process.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .run
export WEB_PORT="${WEB_PORT:-8000}"
# The agent channel (Procfile `channel`: uvicorn, marketplace/asgi.py): where agents connect.
export AGENT_PORT="${AGENT_PORT:-8001}"
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379/0}"
export CHAIN_RPC_URL="${CHAIN_RPC_URL:-http://127.0.0.1:8545}"
# CPU-sized onboarding suites for every machine, so the demo agent is verified in seconds even
# on a GPU box (whose full suites are sized for the device, not for a demo).
export BENCHMARK_SMALL_SUITES="${BENCHMARK_SMALL_SUITES:-1}"
# The demo renter's wallet: Anvil's public dev account #2, funded by the chain process.
export DEMO_RENTER_ADDRESS="${DEMO_RENTER_ADDRESS:-0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC}"
DEMO_RENTER_KEY=0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a
export RUN_STARTED_AT="$(date +%s)"
# The settings refuse to start without a strong key (DEBUG is off): use the one from the
# environment or .env, else this checkout's random one, made once in .run/secret-key.
if [ -z "${DJANGO_SECRET_KEY:-}" ] && ! grep -qs '^DJANGO_SECRET_KEY=' .env; then
  DJANGO_SECRET_KEY="$(bash scripts/local_secret_key.sh)"
  export DJANGO_SECRET_KEY
fi

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
chain_port=$(.venv/bin/python -c "import sys,urllib.parse as u; print(u.urlparse(sys.argv[1]).port or 8545)" "$CHAIN_RPC_URL")
for check in "WEB_PORT $WEB_PORT" "AGENT_PORT $AGENT_PORT" "CHAIN_RPC_URL $chain_port"; do
  set -- $check
  if port_busy "$2"; then
    echo "Port $2 is taken: stop what listens there or choose another with $1=..." >&2
    exit 1
  fi
done

bash scripts/ensure_redis.sh
.venv/bin/python manage.py migrate --noinput -v0
.venv/bin/python manage.py collectstatic --noinput -v0
.venv/bin/python manage.py demo_users --output .run/demo-credentials.txt >/dev/null
database=$(.venv/bin/python -c "
import os, django
os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'marketplace.settings')
django.setup()
from django.conf import settings
d = settings.DATABASES['default']
print(d['ENGINE'].rsplit('.', 1)[-1], d['NAME'])")
# The chain's state file belongs to the database: a restart brings both back together. The
# default SQLite file pairs with .run/anvil-state.json; any other database gets a file of its
# own, so pointing DATABASE_URL elsewhere never loads a chain that another database's money is on.
if [ -z "${CHAIN_STATE_FILE:-}" ]; then
  CHAIN_STATE_FILE=$(.venv/bin/python -c "
import hashlib, os, django
os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'marketplace.settings')
django.setup()
from django.conf import settings
d = settings.DATABASES['default']
if d['ENGINE'].endswith('sqlite3') and str(d['NAME']) == str(settings.BASE_DIR / 'db.sqlite3'):
    print('.run/anvil-state.json')
else:
    key = '|'.join(str(d.get(k) or '') for k in ('ENGINE', 'HOST', 'PORT', 'NAME'))
    print(f'.run/anvil-state-{hashlib.sha256(key.encode()).hexdigest()[:12]}.json')")
fi
export CHAIN_STATE_FILE

cat <<BANNER

  GPU marketplace starting (Ctrl-C stops everything)
  ----------------------------------------------------------------------
  API            http://127.0.0.1:${WEB_PORT}/api/v1/
  API docs       http://127.0.0.1:${WEB_PORT}/api/docs/
  Admin          http://127.0.0.1:${WEB_PORT}/admin/   (user admin, below)
  Listings       http://127.0.0.1:${WEB_PORT}/api/v1/listings
  Agent channel  http://127.0.0.1:${AGENT_PORT}/api/v1/agent/  (agents connect here; ASGI)
  Database       ${database}
  Redis          ${REDIS_URL}
  Chain (Anvil)  ${CHAIN_RPC_URL}, chain id 31337: token, escrow and staking deployed;
                 kept across restarts in ${CHAIN_STATE_FILE} (\`make clean-run\` resets both)
  Credentials (fresh each start; also in .run/demo-credentials.txt):
$(sed 's/^/    /' .run/demo-credentials.txt)
  Demo renter wallet ${DEMO_RENTER_ADDRESS} (Anvil's public dev key
    ${DEMO_RENTER_KEY}), funded with 1,000 test USD.
  The demo provider agent registers, passes CPU-sized onboarding benchmarks and is
  listed within a minute or two: watch for "agent: listing ..." below.
  ----------------------------------------------------------------------

BANNER
rm -f .run/chain-ready  # written again by the chain process once the contracts are deployed
exec .venv/bin/honcho -f Procfile start

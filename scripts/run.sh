#!/usr/bin/env bash
# `make run`: the whole marketplace on this machine. Ctrl-C stops every process.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .run
export WEB_PORT="${WEB_PORT:-8000}"
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379/0}"

bash scripts/ensure_redis.sh
.venv/bin/python manage.py migrate --noinput -v0
.venv/bin/python manage.py collectstatic --noinput -v0
.venv/bin/python manage.py demo_users --output .run/demo-credentials.txt >/dev/null

cat <<BANNER

  GPU marketplace starting (Ctrl-C stops everything)
  ----------------------------------------------------------------------
  API            http://127.0.0.1:${WEB_PORT}/api/v1/
  API docs       http://127.0.0.1:${WEB_PORT}/api/docs/
  Admin          http://127.0.0.1:${WEB_PORT}/admin/
  Listings       http://127.0.0.1:${WEB_PORT}/api/v1/listings
  Database       $(.venv/bin/python -c "from django.conf import settings; import django, os; os.environ.setdefault('DJANGO_SETTINGS_MODULE','marketplace.settings'); django.setup(); d=settings.DATABASES['default']; print(d['ENGINE'].rsplit('.',1)[-1], d['NAME'])")
  Redis          ${REDIS_URL}
  Chain (Anvil)  ${CHAIN_RPC_URL:-http://127.0.0.1:8545}
  Credentials (also in .run/demo-credentials.txt):
$(sed 's/^/    /' .run/demo-credentials.txt)
  The demo provider agent registers, passes onboarding and appears in the listing search.
  ----------------------------------------------------------------------

BANNER
exec .venv/bin/honcho -f Procfile start

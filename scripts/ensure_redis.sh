#!/usr/bin/env bash
# Makes sure a Redis answers at $REDIS_URL (default redis://127.0.0.1:6379/0). Starts the
# machine's redis-server when nothing answers (installing Debian's package if we are root and it
# is missing), rather than letting Celery fall back to an in-process stand-in.
set -euo pipefail
cd "$(dirname "$0")/.."
REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379/0}"
ping() { .venv/bin/python - "$REDIS_URL" <<'PY'
import sys, redis
try:
    redis.Redis.from_url(sys.argv[1], socket_connect_timeout=1).ping()
except Exception:
    sys.exit(1)
PY
}
if ping; then exit 0; fi
port=$(.venv/bin/python -c "import sys,urllib.parse as u; print(u.urlparse(sys.argv[1]).port or 6379)" "$REDIS_URL")
if ! command -v redis-server >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "redis-server not found: installing Debian's package" >&2
    (apt-get install -y -q redis-server >/dev/null 2>&1 || (apt-get update -q >/dev/null && apt-get install -y -q redis-server >/dev/null))
  else
    echo "No Redis answers at $REDIS_URL and redis-server is not installed (apt-get install redis-server)." >&2
    exit 1
  fi
fi
mkdir -p .run
echo "starting redis-server on 127.0.0.1:$port" >&2
redis-server --daemonize yes --bind 127.0.0.1 --port "$port" --save "" --appendonly no \
  --dir "$PWD/.run" --logfile "$PWD/.run/redis.log" --pidfile "$PWD/.run/redis.pid"
for _ in $(seq 50); do ping && exit 0; sleep 0.1; done
echo "redis-server did not answer on port $port (see .run/redis.log)" >&2
exit 1

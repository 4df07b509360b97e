#!/usr/bin/env bash
# Makes sure the PostgreSQL named by $DATABASE_URL answers; starts the machine's cluster if not.
set -euo pipefail
url="${DATABASE_URL:?DATABASE_URL is not set}"
case "$url" in postgres*) ;; *) exit 0 ;; esac
pg_up() { pg_isready -q -d "$url" 2>/dev/null || pg_isready -q -h 127.0.0.1 2>/dev/null; }
if pg_up; then exit 0; fi
if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
  for version in $(ls /etc/postgresql); do
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  done
fi
for _ in $(seq 50); do pg_up && exit 0; sleep 0.2; done
echo "PostgreSQL at $url does not answer (apt-get install postgresql, or unset DATABASE_URL for SQLite)" >&2
exit 1

#!/usr/bin/env bash
# Makes sure the PostgreSQL named by $DATABASE_URL answers and its database exists; starts the
# machine's cluster if nothing answers.
set -euo pipefail
url="${DATABASE_URL:?DATABASE_URL is not set}"
case "$url" in postgres*) ;; *) exit 0 ;; esac
pg_up() { pg_isready -q -d "$url" 2>/dev/null || pg_isready -q -h 127.0.0.1 2>/dev/null; }
if ! pg_up && command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
  for version in $(ls /etc/postgresql); do
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  done
fi
for _ in $(seq 50); do pg_up && break; sleep 0.2; done
if ! pg_up; then
  echo "PostgreSQL at $url does not answer (apt-get install postgresql, or unset DATABASE_URL for SQLite)" >&2
  exit 1
fi
# The suite creates its own test_<name> database; the named one must exist for migrations and
# `make run`.
name="${url##*/}"; name="${name%%\?*}"
server="${url%/*}/postgres"
if ! psql "$server" -tAc "SELECT 1 FROM pg_database WHERE datname = '$name'" | grep -q 1; then
  psql "$server" -qc "CREATE DATABASE \"$name\"" && echo "created database $name" >&2
fi

#!/usr/bin/env bash
# Prints this checkout's local DJANGO_SECRET_KEY, making it on first use: random, kept in
# .run/secret-key (mode 0600) so sessions survive a restart of `make run`. The settings refuse to
# start without a strong key unless DJANGO_DEBUG=true; a production box sets its own key instead.
set -euo pipefail
cd "$(dirname "$0")/.."
key_file=.run/secret-key
if [ ! -s "$key_file" ]; then
  mkdir -p .run
  # umask first: the file never exists with wider permissions, not even for a moment.
  (umask 077 && python3 -c 'import secrets; print(secrets.token_urlsafe(50))' >"$key_file.tmp" &&
    mv "$key_file.tmp" "$key_file")
fi
cat "$key_file"

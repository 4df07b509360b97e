#!/usr/bin/env bash
# Renters' workloads run in bubblewrap (workers/agent/sandbox.py), and tests/sandbox and
# tests/workloads run real ones. Install Debian's bubblewrap when missing and we are root (CI and
# the dev machines); otherwise say exactly what to install. The agent itself installs nothing.
set -euo pipefail
if command -v bwrap >/dev/null; then exit 0; fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing Debian's bubblewrap for the workload sandbox" >&2
  apt-get install -y -q bubblewrap >/dev/null 2>&1 \
    || (apt-get update -q >/dev/null && apt-get install -y -q bubblewrap >/dev/null)
  exit 0
fi
echo "bubblewrap is needed for workloads and tests/sandbox: apt-get install bubblewrap" >&2
exit 1

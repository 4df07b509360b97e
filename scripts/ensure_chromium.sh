#!/usr/bin/env bash
# The dashboard's browser test drives Debian's headless Chromium. Install it when missing and we
# are root (CI and the dev machines); otherwise say exactly what to install.
set -euo pipefail
if [ -n "${CHROMIUM:-}" ] && [ -x "$CHROMIUM" ]; then exit 0; fi
if command -v chromium >/dev/null || [ -x /usr/bin/chromium ]; then exit 0; fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing Debian's chromium for the dashboard browser test" >&2
  apt-get install -y -q chromium >/dev/null 2>&1 \
    || (apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null)
  exit 0
fi
echo "Chromium is needed for tests/dashboard/test_browser.py: apt-get install chromium (or set CHROMIUM=/path)" >&2
exit 1

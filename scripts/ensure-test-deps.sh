#!/usr/bin/env bash
# Make sure what the browser tests need is present: Debian's Chromium.
# Installs it with apt-get when missing and we are root; otherwise says how.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "Installing Debian's chromium for the browser tests..."
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
else
  echo "chromium is not installed: browser tests will be skipped (or fail with" \
       "PAYMENTAPP_REQUIRE_SERVICES=1). Install it with: sudo apt-get install chromium" >&2
fi

#!/usr/bin/env bash
# `make browsers`: Chromium for the browser tests, Debian's package installed with apt-get
# (not root: through sudo). Only when asked: `make test` installs nothing, it names what it
# skipped. PAYMENTAPP_CHROMIUM names another binary, which this leaves to you.
set -euo pipefail

if [ -n "${PAYMENTAPP_CHROMIUM:-}" ]; then
  if command -v "$PAYMENTAPP_CHROMIUM" >/dev/null 2>&1; then
    echo "Chromium: $PAYMENTAPP_CHROMIUM (PAYMENTAPP_CHROMIUM)"
    exit 0
  fi
  echo "make browsers: PAYMENTAPP_CHROMIUM=$PAYMENTAPP_CHROMIUM is not there; install it, or unset it for Debian's chromium" >&2
  exit 1
fi
if [ -x /usr/bin/chromium ]; then
  echo "Chromium: /usr/bin/chromium"
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "make browsers: no apt-get here; install Chromium and set PAYMENTAPP_CHROMIUM to its path" >&2
  exit 1
fi
as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}
echo "installing Debian's chromium (apt-get)"
as_root apt-get update -qq
as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
echo "Chromium: /usr/bin/chromium"

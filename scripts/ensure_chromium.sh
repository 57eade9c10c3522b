#!/usr/bin/env bash
# Install Debian's `chromium` (for the headless-browser report test) when /usr/bin/chromium is
# missing. Idempotent and quiet: does nothing when it is already there. Needs apt-get and root
# (or sudo without a password).
set -euo pipefail
CHROMIUM=/usr/bin/chromium
if [ -x "$CHROMIUM" ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "ensure_chromium: $CHROMIUM is missing and apt-get is not available; install chromium by hand" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO="sudo -n"
  else
    echo "ensure_chromium: $CHROMIUM is missing and installing it needs root (no sudo found)" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends chromium fonts-liberation; } >"$log" 2>&1; then
  tail -n 20 "$log" >&2
  echo "ensure_chromium: apt-get could not install chromium" >&2
  exit 1
fi
"$CHROMIUM" --version >/dev/null 2>&1 || { echo "ensure_chromium: $CHROMIUM installed but does not run" >&2; exit 1; }
echo "ensure_chromium: installed $("$CHROMIUM" --version 2>/dev/null | head -n 1)"

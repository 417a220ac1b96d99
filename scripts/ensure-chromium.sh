#!/usr/bin/env bash
# Install Debian's Chromium for the report tests when it is missing. Never fails: where it cannot be
# installed (no root, no apt), the browser tests skip and say why.
if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "chromium not installed and cannot be installed here (needs root and apt-get): browser tests will skip"
  exit 0
fi
echo "installing chromium from Debian's packages for the report tests (about a minute)..."
export DEBIAN_FRONTEND=noninteractive
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium; } >/tmp/repro-chromium.log 2>&1; then
  echo "chromium could not be installed (see /tmp/repro-chromium.log): browser tests will skip"
fi
exit 0

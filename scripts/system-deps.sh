#!/usr/bin/env bash
# Install the system packages the test-suite needs, when we can (root + apt).
# Chromium drives the dashboard browser tests (through Playwright, never `playwright install`).
set -u
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "system-deps: installing ${need[*]} with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null && apt-get install -y -qq "${need[@]}" >/dev/null \
    || echo "system-deps: apt-get install ${need[*]} failed; browser tests will skip with the reason"
else
  echo "system-deps: missing ${need[*]} (not root or no apt); browser tests will skip with the reason"
fi
exit 0

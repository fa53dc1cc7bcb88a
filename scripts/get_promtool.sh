#!/usr/bin/env bash
# Fetch Prometheus's promtool (Debian's prometheus package, unpacked, nothing installed or started)
# into .tools/promtool, for the tests that check metrics and alert rules (`promtool check ...`).
set -euo pipefail
cd "$(dirname "$0")/.."
dest=.tools
mkdir -p "$dest/prometheus"
(cd "$dest" && rm -f prometheus_*.deb && apt-get download prometheus >/dev/null 2>&1 \
  && dpkg-deb -x prometheus_*.deb prometheus && rm -f prometheus_*.deb)
ln -sf prometheus/usr/bin/promtool "$dest/promtool"
"$dest/promtool" --version 2>&1 | head -1

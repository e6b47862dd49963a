#!/usr/bin/env bash
# Standalone Rails Action Cable server (Debian ruby-actioncable 6.1.7 on Debian puma 5.6) for
# the integration tests, in the foreground (exec): config.ru under puma via server.rb.
#   start.sh [PORT]     PORT 0 or absent = a free port; prints `READY <port>` on stdout when
#                       listening on 127.0.0.1 only; logs on stderr. Stop with SIGTERM.
#   ws://127.0.0.1:PORT/cable       Action Cable (see config.ru for channels, tokens, origins)
#   http://127.0.0.1:PORT/control/  test control API (broadcast, performed, disconnect, ...)
# Environment: CABLE_ALLOW_ANY_ORIGIN=1, CABLE_ORIGINS, CABLE_BEAT_INTERVAL, CABLE_TOKENS,
# CABLE_LOG_LEVEL=debug, CABLE_PUMA_THREADS (see config.ru).
set -euo pipefail
D=$(cd "$(dirname "$0")" && pwd)
if ! ruby -e 'require "action_cable"; require "puma"' 2>/dev/null; then
  echo "start.sh: ruby with action_cable and puma not found: install the Debian packages ruby-actioncable and puma (tests/run.sh does)" >&2
  exit 127
fi
cd "$D"
exec ruby "$D/server.rb" "${1:-0}"

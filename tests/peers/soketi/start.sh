#!/usr/bin/env bash
# Start soketi 1.6.1 (the Pusher Channels protocol 7 server from tests/peers/package.json) in the
# foreground (exec), so the caller owns the process. Loopback only: the WebSocket/HTTP API, the
# /usage (metrics) server and soketi's UDP cluster discovery (node-discover, always on) all bind
# 127.0.0.1, and discovery unicasts to 127.0.0.1 only (config.json sets the bind address, which has
# no SOKETI_* variable). Everything else comes from the environment so parallel tests can pick
# free ports:
#   PORT          WebSocket + HTTP API (ws://127.0.0.1:$PORT/app/<key>)   default 6001
#   METRICS_PORT  /usage, /ready (and /metrics when SOKETI_METRICS_ENABLED=true)  default 9601
#   CLUSTER_PORT  UDP discovery                                          default 11002
#   SOKETI_DEBUG  true: log every frame to stdout                        default false
# Any other SOKETI_* variable is passed through (e.g. SOKETI_DEFAULT_APP_MAX_CONNECTIONS=2).
# The default app is app-id / app-key / app-secret with client events enabled.
# Needs `npm ci` in tests/peers first (the Rust tests' ensure_npm() and tests/run.sh do it).
set -euo pipefail
D=$(cd "$(dirname "$0")" && pwd)
SERVER="$D/../node_modules/@soketi/soketi/bin/server.js"
if [ ! -f "$SERVER" ]; then
  echo "start.sh: $SERVER not found: run npm ci in tests/peers" >&2
  exit 127
fi
export SOKETI_HOST=127.0.0.1 SOKETI_PORT="${PORT:-6001}" \
  SOKETI_DEFAULT_APP_ID="${SOKETI_DEFAULT_APP_ID:-app-id}" \
  SOKETI_DEFAULT_APP_KEY="${SOKETI_DEFAULT_APP_KEY:-app-key}" \
  SOKETI_DEFAULT_APP_SECRET="${SOKETI_DEFAULT_APP_SECRET:-app-secret}" \
  SOKETI_DEFAULT_APP_ENABLE_CLIENT_MESSAGES="${SOKETI_DEFAULT_APP_ENABLE_CLIENT_MESSAGES:-true}" \
  SOKETI_METRICS_ENABLED="${SOKETI_METRICS_ENABLED:-false}" SOKETI_METRICS_HOST=127.0.0.1 \
  SOKETI_METRICS_SERVER_PORT="${METRICS_PORT:-9601}" \
  SOKETI_CLUSTER_UNICAST_ADDRESSES=127.0.0.1 SOKETI_CLUSTER_PORT="${CLUSTER_PORT:-11002}" \
  SOKETI_SHUTDOWN_GRACE_PERIOD="${SOKETI_SHUTDOWN_GRACE_PERIOD:-300}" \
  SOKETI_DEBUG="${SOKETI_DEBUG:-false}"
# Plain log lines (the colors package ignores NO_COLOR), no aws-sdk v2 end-of-support banner.
export FORCE_COLOR="${FORCE_COLOR:-0}" AWS_SDK_JS_SUPPRESS_MAINTENANCE_MODE_MESSAGE=1
unset SOKETI_CLUSTER_BROADCAST_ADDRESS SOKETI_CLUSTER_MULTICAST_ADDRESS
# soketi reads a .env file from its working directory (dotenv): run where there is none.
cd "$D"
exec node "$SERVER" start --config="$D/config.json"

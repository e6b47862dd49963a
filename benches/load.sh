#!/usr/bin/env bash
# One load run, all on 127.0.0.1: starts RabbitMQ (web-stomp), the Socket.IO test backend and
# Switchboard with four routes, then drives the same clients through
#   1. STOMP: direct to RabbitMQ | stomp->stomp passthrough | stomp->stomp translate
#   2. Socket.IO echo: direct to the backend | socketio->socketio passthrough |
#      socketio->socketio translate | STOMP client -> socket.io backend (translate)
# and prints msg/s, latency percentiles and ratios against each group's direct baseline.
# Usage: benches/load.sh [clients] [messages]   (set-up as for tests/run.sh must have run)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
CLIENTS=${1:-50}
MESSAGES=${2:-400}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 300); do (echo > /dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 not up" >&2; return 1; }

cargo build --release --bins -q
TMP=$(mktemp -d)
export STOMP_WS_PORT=$(free_port) STOMP_PORT=$(free_port) AMQP_PORT=$(free_port) DIST_PORT=$(free_port) ERL_EPMD_PORT=$(free_port) RABBIT_DIR=$TMP/rabbit
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  STOP_TIMEOUT=3 tests/peers/rabbitmq/stop.sh >/dev/null 2>&1 || true
  rm -rf "$TMP"
}
trap cleanup EXIT
tests/peers/rabbitmq/start.sh > "$TMP/rabbit.log" 2>&1 &
PIDS+=($!)
SIO=$(free_port)
(cd tests/peers && exec node sio_backend.js "$SIO") > "$TMP/sio.log" 2>&1 &
PIDS+=($!)
ADMIN=$(free_port); P=$(free_port)
TOKEN=$(cd tests/peers && node -e "console.log(require('jsonwebtoken').sign({sub:'load'}, 'test-secret'))")
cat > "$TMP/config.toml" <<CONF
[admin]
listen = "127.0.0.1:$ADMIN"
[log]
level = "warn"
[[route]]
name = "stomp-pt"
listen = "127.0.0.1:$P"
path = "/pt"
client = "stomp"
mode = "passthrough"
[route.upstream]
url = "ws://127.0.0.1:$STOMP_WS_PORT/ws"
dialect = "stomp"
[[route]]
name = "stomp-tr"
listen = "127.0.0.1:$P"
path = "/tr"
client = "stomp"
[route.upstream]
url = "ws://127.0.0.1:$STOMP_WS_PORT/ws"
dialect = "stomp"
[[route]]
name = "stomp-sio"
listen = "127.0.0.1:$P"
path = "/xs"
client = "stomp"
[route.upstream]
url = "ws://127.0.0.1:$SIO/socket.io/"
dialect = "socketio"
[[route]]
name = "sio-pt"
listen = "127.0.0.1:$P"
path = "/sio-pt/"
client = "socketio"
mode = "passthrough"
[route.upstream]
url = "ws://127.0.0.1:$SIO/socket.io/"
dialect = "socketio"
[[route]]
name = "sio-tr"
listen = "127.0.0.1:$P"
path = "/sio-tr/"
client = "socketio"
[route.upstream]
url = "ws://127.0.0.1:$SIO/socket.io/"
dialect = "socketio"
CONF
target/release/switchboard --config "$TMP/config.toml" > "$TMP/proxy.log" 2>&1 &
PROXY=$!
PIDS+=($PROXY)
wait_port "$SIO"; wait_port "$P"; wait_port "$STOMP_WS_PORT"
tests/peers/rabbitmq/ctl.sh await_startup >/dev/null 2>&1 || true
sleep 2
LOAD=target/release/switchboard-load
echo "== STOMP through RabbitMQ ($CLIENTS clients x $MESSAGES messages, window 8)"
$LOAD --clients "$CLIENTS" --messages "$MESSAGES" --login guest --passcode guest \
  --target "direct=stomp:ws://127.0.0.1:$STOMP_WS_PORT/ws" \
  --target "passthrough=stomp:ws://127.0.0.1:$P/pt" \
  --target "translate=stomp:ws://127.0.0.1:$P/tr"
echo
echo "== Socket.IO echo backend ($CLIENTS clients x $MESSAGES messages, window 8)"
$LOAD --clients "$CLIENTS" --messages "$MESSAGES" --token "$TOKEN" \
  --target "direct=socketio:ws://127.0.0.1:$SIO/socket.io/" \
  --target "sio-passthru=socketio:ws://127.0.0.1:$P/sio-pt/" \
  --target "sio-translate=socketio:ws://127.0.0.1:$P/sio-tr/" \
  --target "stomp->sio=stomp:ws://127.0.0.1:$P/xs" --subscribe /topic/echo --send /app/echo
echo
# Memory: the proxy's resident set now (every session above has ended) and its peak.
echo "== proxy memory: $(grep -E '^VmRSS' /proc/$PROXY/status | tr -s ' \t' ' '), peak $(grep -E '^VmHWM' /proc/$PROXY/status | awk '{print $2, $3}')"

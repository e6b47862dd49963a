#!/usr/bin/env bash
# Switchboard against nginx, on one machine in one go, all on loopback (127.0.0.0/8).
#
# Starts RabbitMQ (web-stomp), the Socket.IO echo backend (tests/peers/sio_backend.js), nginx
# (Debian's, installed with apt-get if missing; own prefix in a temp dir, one worker, a plain
# WebSocket passthrough: proxy_pass with Upgrade/Connection) in front of the same backends,
# and a release build of Switchboard with passthrough, translating and embedded-hub routes.
# Then `switchboard-load` (src/bin/load.rs) measures, for the same load on every target:
#   1. Socket.IO backend, closed loop ($CLIENTS clients, window 8): direct | nginx |
#      Switchboard passthrough | Socket.IO -> Socket.IO | STOMP -> Socket.IO
#   2. the same at low concurrency ($LOW_CLIENTS clients, one message in flight): latency
#   3. the same, open loop at $RATE msg/s aggregate: latency added over direct
#   4. RabbitMQ, closed loop: direct | nginx | STOMP passthrough | STOMP -> STOMP
#   5. the throughput ceiling on the embedded hub (no Node or Erlang in the path):
#      STOMP -> hub and SocketCluster -> hub, each client's publish echoed to itself
#   6. idle: $IDLE_N clients connect and subscribe, each on a freshly started proxy, per
#      route in $IDLE_ROUTES; the proxy's RSS per client, and again $IDLE_AFTER s after
#      they left.
# Every target is measured ROUNDS times, rounds interleaved; tables show medians. Each figure
# of 1-4 comes with its ratio to nginx and the latency added over direct; CPU is
# the proxy process's utime + stime (/proc/<pid>/stat; nginx: master + worker) per message.
#
# Usage: benches/compare.sh           (set-up as for tests/run.sh must have run: node
#                                      modules, rabbitmq-server)
# Knobs (environment): CLIENTS=50 MESSAGES=1000 LOW_CLIENTS=10 LOW_MESSAGES=2000 RATE=10000
#   RATE_SECONDS=5 IDLE_N=10000 IDLE_AFTER=60 IDLE_ROUTES="stomp-sio sio-tr" SIZE=128 ROUNDS=3
#   SKIP="idle rabbit ..." (any of: sio low open rabbit hub idle) IDLE_PER_ADDR=20000
#   LIMITS='read_buffer_bytes = 4096' (lines added to the proxy's [limits]) SB_WORKERS=1 (the
#   proxy's limits.workers; 1 like nginx's one worker)
# The proxy holds two sockets per client, and the script raises `ulimit -n` only as far as
# `ulimit -Hn` allows (the systemd unit raises it with LimitNOFILE). When IDLE_N needs more
# descriptors than that, the idle run splits the clients over as many proxy processes as it
# takes (each on its own port with the same routes, each with its own load process) and
# reports the sum while every client of every process is connected, as well as each
# process's own lines. Above 20k clients the load connects from several source addresses
# (127.0.0.1, .2, ...) and the proxy dials several backends (one per 20k clients, fewer
# where the descriptor limit is lower), as one address pair has only ~28k ephemeral ports.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
CLIENTS=${CLIENTS:-50}
MESSAGES=${MESSAGES:-1000}
LOW_CLIENTS=${LOW_CLIENTS:-10}
LOW_MESSAGES=${LOW_MESSAGES:-2000}
RATE=${RATE:-10000}
RATE_SECONDS=${RATE_SECONDS:-5}
IDLE_N=${IDLE_N:-10000}
IDLE_AFTER=${IDLE_AFTER:-60}
IDLE_ROUTES=${IDLE_ROUTES:-stomp-sio sio-tr}
SIZE=${SIZE:-128}
ROUNDS=${ROUNDS:-3}
SKIP=${SKIP:-}
IDLE_PER_ADDR=${IDLE_PER_ADDR:-20000}
LIMITS=${LIMITS:-}
SB_WORKERS=${SB_WORKERS:-1}
skip() { [[ " $SKIP " == *" $1 "* ]]; }
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 600); do (echo > /dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 not up" >&2; return 1; }

# --- nginx from Debian -----------------------------------------------------------------------
NGINX=$(command -v nginx || true)
[ -n "$NGINX" ] || [ ! -x /usr/sbin/nginx ] || NGINX=/usr/sbin/nginx
if [ -z "$NGINX" ]; then
  echo "== installing nginx (Debian package)"
  # Keep the package's service from starting on port 80: policy-rc.d 101 = "do not start".
  MADE_POLICY=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod +x /usr/sbin/policy-rc.d
    MADE_POLICY=1
  fi
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx >/dev/null
  [ -z "$MADE_POLICY" ] || $SUDO rm -f /usr/sbin/policy-rc.d
  NGINX=/usr/sbin/nginx
fi

cargo build --release --bins -q
LOAD=target/release/switchboard-load

# --- descriptors and idle size -----------------------------------------------------------------
HARD=$(ulimit -Hn)
if [ "$HARD" = unlimited ]; then HARD=1048576; fi
ulimit -n "$HARD"
MAX_IDLE=$(( (HARD - 512) / 2 ))
SHARDS=$(( (IDLE_N + MAX_IDLE - 1) / MAX_IDLE ))
SHARD_N=$(( (IDLE_N + SHARDS - 1) / SHARDS ))
# A backend (Node) holds one socket per client, under the same descriptor limit.
PER_BACKEND=$(( IDLE_PER_ADDR < HARD - 1024 ? IDLE_PER_ADDR : HARD - 1024 ))
if [ "$SHARDS" -gt 1 ]; then
  echo "note: IDLE_N=$IDLE_N needs $(( 2 * IDLE_N + 512 )) descriptors in one proxy; ulimit -Hn is $HARD: the idle run splits them over $SHARDS proxy processes of $SHARD_N clients"
  SHARDS_PER_BACKEND=$(( PER_BACKEND / SHARD_N > 0 ? PER_BACKEND / SHARD_N : 1 ))
  SPLIT=$(( (SHARDS + SHARDS_PER_BACKEND - 1) / SHARDS_PER_BACKEND ))
else
  # One backend (and one source address) per IDLE_PER_ADDR (20k) idle clients.
  SPLIT=$(( (IDLE_N + PER_BACKEND - 1) / PER_BACKEND ))
fi
SRC=$(seq -s, -f '127.0.0.%g' 1 "$SPLIT")

TMP=$(mktemp -d)
export STOMP_WS_PORT=$(free_port) STOMP_PORT=$(free_port) AMQP_PORT=$(free_port) DIST_PORT=$(free_port) ERL_EPMD_PORT=$(free_port) RABBIT_DIR=$TMP/rabbit
PIDS=()
PROXY=""
NGINX_PID=""
RABBIT=""
cleanup() {
  set +e
  [ -z "$PROXY" ] || kill "$PROXY" 2>/dev/null
  [ -z "$NGINX_PID" ] || kill -QUIT "$NGINX_PID" 2>/dev/null
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  [ -z "$RABBIT" ] || STOP_TIMEOUT=5 tests/peers/rabbitmq/stop.sh >/dev/null 2>&1
  sleep 0.5
  [ -z "$PROXY" ] || kill -9 "$PROXY" 2>/dev/null
  [ -z "$NGINX_PID" ] || kill -9 "$NGINX_PID" 2>/dev/null
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if ! skip rabbit; then
  tests/peers/rabbitmq/start.sh > "$TMP/rabbit.log" 2>&1 &
  RABBIT=$!
  PIDS+=("$RABBIT")
fi
SIO_PORTS=()
declare -A LOGS
for k in $(seq 1 "$SPLIT"); do
  port=$(free_port)
  (cd tests/peers && exec node sio_backend.js "$port") > "$TMP/sio-$k.log" 2>&1 &
  PIDS+=($!)
  LOGS[$!]=$TMP/sio-$k.log
  SIO_PORTS+=("$port")
done
# A backend that died makes every later figure meaningless: say so, with its last words.
check_alive() {
  local p
  for p in "${!LOGS[@]}"; do
    if ! kill -0 "$p" 2>/dev/null; then
      echo "!! backend $p died ($1); the figures above are invalid. Its log ends:" >&2
      tail -20 "${LOGS[$p]}" >&2
      exit 1
    fi
  done
}
SIO=${SIO_PORTS[0]}
TOKEN=$(cd tests/peers && node -e "console.log(require('jsonwebtoken').sign({sub:'load'}, 'test-secret'))")

# --- nginx: one worker, plain WebSocket passthrough to both backends ----------------------------
NGX=$(free_port)
mkdir -p "$TMP/nginx/logs"
cat > "$TMP/nginx/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/logs/error.log warn;
worker_rlimit_nofile $HARD;
events { worker_connections $(( HARD / 2 )); }
http {
  access_log off;
  client_body_temp_path $TMP/nginx/body;
  proxy_temp_path $TMP/nginx/proxy;
  fastcgi_temp_path $TMP/nginx/fastcgi;
  uwsgi_temp_path $TMP/nginx/uwsgi;
  scgi_temp_path $TMP/nginx/scgi;
  map \$http_upgrade \$connection_upgrade { default upgrade; '' close; }
  server {
    listen 127.0.0.1:$NGX;
    location /socket.io/ {
      proxy_pass http://127.0.0.1:$SIO;
      proxy_http_version 1.1;
      proxy_set_header Upgrade \$http_upgrade;
      proxy_set_header Connection \$connection_upgrade;
      proxy_read_timeout 1h;
    }
    location /ws {
      proxy_pass http://127.0.0.1:$STOMP_WS_PORT;
      proxy_http_version 1.1;
      proxy_set_header Upgrade \$http_upgrade;
      proxy_set_header Connection \$connection_upgrade;
      proxy_read_timeout 1h;
    }
  }
}
CONF
"$NGINX" -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" -e "$TMP/nginx/logs/error.log" &
NGINX_PID=$!

# --- Switchboard ---------------------------------------------------------------------------------
ADMIN=$(free_port); P=$(free_port)
route() { # name path client mode upstream-dialect [url]
  printf '[[route]]\nname = "%s"\nlisten = "127.0.0.1:%s"\npath = "%s"\nclient = "%s"\nmode = "%s"\n[route.upstream]\ndialect = "%s"\n' "$1" "$P" "$2" "$3" "$4" "$5"
  [ -z "${6:-}" ] || printf 'url = "%s"\n' "$6"
}
write_config() { # uses $P and $ADMIN
  printf '[admin]\nlisten = "127.0.0.1:%s"\n[log]\nlevel = "warn"\n' "$ADMIN"
  # One session worker, as nginx runs one worker process: the same CPU to work with (and
  # on a 2-core machine the load tool and the backends need the other core). LIMITS: more
  # [limits] lines, e.g. LIMITS='read_buffer_bytes = 4096'.
  printf '[limits]\nworkers = %s\n%s\n' "$SB_WORKERS" "$LIMITS"
  route sio-pt /sio-pt/ socketio passthrough socketio "ws://127.0.0.1:$SIO/socket.io/"
  route sio-tr /sio-tr/ socketio translate socketio "ws://127.0.0.1:$SIO/socket.io/"
  route stomp-sio /xs stomp translate socketio "ws://127.0.0.1:$SIO/socket.io/"
  route stomp-pt /pt stomp passthrough stomp "ws://127.0.0.1:$STOMP_WS_PORT/ws"
  route stomp-tr /tr stomp translate stomp "ws://127.0.0.1:$STOMP_WS_PORT/ws"
  route stomp-hub /hub stomp translate hub
  route sc-hub /socketcluster/ socketcluster translate hub
  # Idle clients beyond 20k go to further backends (one per 20k), as one address pair has
  # only ~28k ephemeral ports for the proxy's upstream leg.
  local j
  for j in $(seq 2 "$SPLIT"); do
    route "sio-tr-$j" "/sio-tr-$j/" socketio translate socketio "ws://127.0.0.1:${SIO_PORTS[$((j-1))]}/socket.io/"
    route "stomp-sio-$j" "/xs-$j" stomp translate socketio "ws://127.0.0.1:${SIO_PORTS[$((j-1))]}/socket.io/"
    route "sio-pt-$j" "/sio-pt-$j/" socketio passthrough socketio "ws://127.0.0.1:${SIO_PORTS[$((j-1))]}/socket.io/"
  done
}
write_config > "$TMP/config.toml"
start_proxy() {
  target/release/switchboard --config "$TMP/config.toml" >> "$TMP/proxy.log" 2>&1 &
  PROXY=$!
  wait_port "$P"
  sleep 1
}
stop_proxy() {
  kill "$PROXY" 2>/dev/null || true
  wait "$PROXY" 2>/dev/null || true
  PROXY=""
}
start_proxy
for port in "${SIO_PORTS[@]}"; do wait_port "$port"; done
wait_port "$NGX"
NGINX_WORKERS=$(cat /proc/"$NGINX_PID"/task/*/children | tr -s ' ' ',' | sed 's/,$//')
NGINX_CPU="$NGINX_PID${NGINX_WORKERS:+,$NGINX_WORKERS}"
if [ -n "$RABBIT" ]; then
  wait_port "$STOMP_WS_PORT"
  tests/peers/rabbitmq/ctl.sh await_startup >/dev/null 2>&1 || true
fi
sleep 1

echo "== $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg); nginx $("$NGINX" -v 2>&1 | sed 's/.*nginx\///'), one worker"
SIO_TARGETS=(
  --target "direct=socketio:ws://127.0.0.1:$SIO/socket.io/"
  --target "nginx=socketio:ws://127.0.0.1:$NGX/socket.io/" --cpu "nginx=$NGINX_CPU"
  --target "sb-passthrough=socketio:ws://127.0.0.1:$P/sio-pt/"
  --target "sio->sio=socketio:ws://127.0.0.1:$P/sio-tr/"
  --target "stomp->sio=stomp:ws://127.0.0.1:$P/xs"
)
sio_load() {
  check_alive "before a Socket.IO run"
  $LOAD "${SIO_TARGETS[@]}" --cpu "sb-passthrough=$PROXY" --cpu "sio->sio=$PROXY" --cpu "stomp->sio=$PROXY" \
    --token "$TOKEN" --subscribe /topic/echo --send /app/echo --baseline nginx --direct direct \
    --size "$SIZE" --clk-tck "$(getconf CLK_TCK)" --rounds "$ROUNDS" "$@"
}
# Warm-up, not reported: Node's JIT, RabbitMQ's and nginx's first connections, the proxy's
# allocator, so the first target measured is not the slow one.
ROUNDS=1 sio_load --clients "$CLIENTS" --messages 200 > /dev/null
if ! skip sio; then
  echo; echo "== 1. Socket.IO echo backend, closed loop"
  sio_load --clients "$CLIENTS" --messages "$MESSAGES" --window 8
  check_alive "during section 1"
fi
if ! skip low; then
  echo; echo "== 2. Socket.IO echo backend, low concurrency (one message in flight per client)"
  sio_load --clients "$LOW_CLIENTS" --messages "$LOW_MESSAGES" --window 1
fi
if ! skip open; then
  echo; echo "== 3. Socket.IO echo backend, open loop at $RATE msg/s for ${RATE_SECONDS}s"
  sio_load --clients "$CLIENTS" --messages $(( RATE * RATE_SECONDS / CLIENTS )) --rate "$RATE"
fi
if [ -n "$RABBIT" ]; then
  echo; echo "== 4. RabbitMQ web-stomp, closed loop"
  for t in "ws://127.0.0.1:$STOMP_WS_PORT/ws" "ws://127.0.0.1:$NGX/ws" "ws://127.0.0.1:$P/pt" "ws://127.0.0.1:$P/tr"; do
    $LOAD --clients "$CLIENTS" --messages 200 --login guest --passcode guest --target "warm=stomp:$t" > /dev/null
  done
  $LOAD --clients "$CLIENTS" --messages "$MESSAGES" --window 8 --login guest --passcode guest \
    --rounds "$ROUNDS" --size "$SIZE" --clk-tck "$(getconf CLK_TCK)" --baseline nginx --direct direct \
    --target "direct=stomp:ws://127.0.0.1:$STOMP_WS_PORT/ws" \
    --target "nginx=stomp:ws://127.0.0.1:$NGX/ws" --cpu "nginx=$NGINX_CPU" \
    --target "sb-passthrough=stomp:ws://127.0.0.1:$P/pt" --cpu "sb-passthrough=$PROXY" \
    --target "stomp->stomp=stomp:ws://127.0.0.1:$P/tr" --cpu "stomp->stomp=$PROXY"
fi
check_alive "after sections 1-4"
if ! skip hub; then
  echo; echo "== 5. embedded hub (throughput ceiling; the proxy's CPU includes the hub's work)"
  $LOAD --clients "$CLIENTS" --messages "$MESSAGES" --window 8 --size "$SIZE" --rounds "$ROUNDS" --clk-tck "$(getconf CLK_TCK)" \
    --target "stomp->hub=stomp:ws://127.0.0.1:$P/hub" --cpu "stomp->hub=$PROXY" \
    --target "sc->hub=socketcluster:ws://127.0.0.1:$P/socketcluster/" --cpu "sc->hub=$PROXY"
fi
# Idle target on route $1 of the proxy on port $2, toward backend $3 (1-based).
idle_target() {
  local sfx=""
  [ "$3" -eq 1 ] || sfx="-$3"
  case "$1" in
    stomp-sio) echo "$1$sfx=stomp:ws://127.0.0.1:$2/xs$sfx" ;;
    sio-tr) echo "$1$sfx=socketio:ws://127.0.0.1:$2/sio-tr$sfx/" ;;
    sio-pt) echo "$1$sfx=socketio:ws://127.0.0.1:$2/sio-pt$sfx/" ;;
    stomp-hub) echo "$1=stomp:ws://127.0.0.1:$2/hub" ;;
  esac
}
metric() { # admin port, metric name: the sum of its samples
  curl -s "http://127.0.0.1:$1/metrics" | awk -v m="$2" '$1 == m || index($1, m "{") == 1 { s += $NF } END { print s + 0 }'
}
rss_of() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
# More clients than one process has descriptors for: $SHARDS proxy processes, each with its
# own load process; every load holds its clients until all have reported, then the sum. The
# loads do not bind source addresses: a port taken with bind() is closed to every connect()
# that picks its own, and the proxies' upstream legs need those (each destination, a proxy
# process or a backend, takes fewer than one address pair's ~28k ports).
idle_sharded() {
  local r=$1 k n b got total=0 base=0 with=0 sessions=0 after=0 up rss0 rss1
  local ports=() admins=() procs=() loads=()
  for k in $(seq 1 "$SHARDS"); do
    local sp sa
    sp=$(free_port); sa=$(free_port)
    P=$sp ADMIN=$sa write_config > "$TMP/shard-$k.toml"
    target/release/switchboard --config "$TMP/shard-$k.toml" >> "$TMP/shard-$k.log" 2>&1 &
    procs+=($!); PIDS+=($!); ports+=("$sp"); admins+=("$sa")
  done
  for k in $(seq 1 "$SHARDS"); do wait_port "${ports[$((k-1))]}"; done
  sleep 1
  rm -f "$TMP"/ready-* "$TMP/release"
  for k in $(seq 1 "$SHARDS"); do
    n=$(( k < SHARDS ? SHARD_N : IDLE_N - (SHARDS - 1) * SHARD_N ))
    b=$(( (k - 1) % SPLIT + 1 ))
    $LOAD --idle --clients "$n" --rss-pid "${procs[$((k-1))]}" --after "$IDLE_AFTER" --token "$TOKEN" \
      --timeout 900 --ready-file "$TMP/ready-$k" --release-file "$TMP/release" \
      "${EXTRA[@]}" --target "$(idle_target "$r" "${ports[$((k-1))]}" "$b")" > "$TMP/idle-$k.out" 2>&1 &
    loads+=($!)
  done
  for _ in $(seq 1 9000); do
    got=0
    for k in $(seq 1 "$SHARDS"); do [ -e "$TMP/ready-$k" ] && got=$((got + 1)); done
    [ "$got" -lt "$SHARDS" ] || break
    for p in "${loads[@]}"; do kill -0 "$p" 2>/dev/null || break 2; done
    sleep 0.1
  done
  for k in $(seq 1 "$SHARDS"); do
    read -r up rss0 rss1 < "$TMP/ready-$k" || { echo "!! shard $k did not report"; up=0; rss0=0; rss1=0; }
    total=$((total + up)); base=$((base + rss0)); with=$((with + rss1))
    sessions=$((sessions + $(metric "${admins[$((k-1))]}" switchboard_sessions_active)))
  done
  echo "idle $r over $SHARDS proxy processes: $total clients connected and subscribed at once ($sessions sessions active by the proxies' /metrics)"
  awk -v b="$base" -v w="$with" -v n="$total" 'BEGIN { printf "  proxies'"'"' RSS summed: baseline %.1f MiB, with clients %.1f MiB = %.1f KiB per client (both legs)\n", b/1024, w/1024, (w-b)/(n>0?n:1) }'
  touch "$TMP/release"
  for p in "${loads[@]}"; do wait "$p" || true; done
  for k in $(seq 1 "$SHARDS"); do after=$((after + $(rss_of "${procs[$((k-1))]}"))); done
  awk -v b="$base" -v a="$after" -v s="$IDLE_AFTER" -v p="$SHARDS" 'BEGIN { printf "  %s s after they left, summed %.1f MiB (target <= 2x baseline + 10 MiB per process = %.1f MiB)\n", s, a/1024, 2*b/1024 + 10*p }'
  for k in $(seq 1 "$SHARDS"); do echo "  process $k:"; sed 's/^/    /' "$TMP/idle-$k.out"; done
  for p in "${procs[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${procs[@]}"; do wait "$p" 2>/dev/null || true; done
}
if ! skip idle; then
  for r in $IDLE_ROUTES; do
    case "$r" in
      stomp-sio) EXTRA=(--subscribe /topic/echo) ;;
      sio-tr|sio-pt|stomp-hub) EXTRA=() ;;
      *) echo "unknown idle route $r (stomp-sio sio-tr sio-pt stomp-hub)"; continue ;;
    esac
    if [ "$SHARDS" -gt 1 ]; then
      echo; echo "== 6. idle: $IDLE_N clients on $r ($SHARDS fresh proxy processes)"
      stop_proxy
      check_alive "before idle $r"
      idle_sharded "$r"
      continue
    fi
    echo; echo "== 6. idle: $IDLE_N clients on $r (fresh proxy)"
    stop_proxy; start_proxy
    T=()
    # The hub has no backend to spread over.
    [ "$r" = stomp-hub ] && N_T=1 || N_T=$SPLIT
    for k in $(seq 1 "$N_T"); do T+=(--target "$(idle_target "$r" "$P" "$k")"); done
    check_alive "before idle $r"
    $LOAD --idle --clients "$IDLE_N" --rss-pid "$PROXY" --after "$IDLE_AFTER" --token "$TOKEN" \
      --source-addrs "$SRC" --timeout 600 "${EXTRA[@]}" "${T[@]}"
  done
fi

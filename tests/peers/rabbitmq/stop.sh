#!/usr/bin/env bash
# Stop what start.sh started (same environment: RABBIT_DIR, default <this dir>/var): SIGTERM to
# the rabbitmq-server script (it stops the VM gracefully), SIGKILL to both after STOP_TIMEOUT
# seconds (default 20), then the epmd start.sh started, by its PID. Safe to call twice.
set -uo pipefail
D=$(cd "$(dirname "$0")" && pwd)
: "${RABBIT_DIR:=$D/var}"
[ -d "$RABBIT_DIR" ] || { echo "stop.sh: no $RABBIT_DIR" >&2; exit 0; }

alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null; }
children() { # PIDs whose parent is $1 (no procps needed)
  local f
  for f in /proc/[0-9]*/stat; do
    read -r pid _ _ ppid _ < "$f" 2>/dev/null || continue
    [ "$ppid" = "$1" ] && echo "$pid"
  done
  return 0
}

S=$(cat "$RABBIT_DIR/server.pid" 2>/dev/null || true)
if alive "$S"; then
  VM=$(children "$S")
  kill -TERM "$S" 2>/dev/null || true
  for _ in $(seq 1 $(( ${STOP_TIMEOUT:-20} * 10 ))); do
    alive "$S" || break
    sleep 0.1
  done
  if alive "$S"; then
    echo "stop.sh: rabbitmq-server $S still running, killing it" >&2
    kill -KILL "$S" $VM 2>/dev/null || true
  fi
  for p in $VM; do alive "$p" && kill -KILL "$p" 2>/dev/null; done
  echo "stopped rabbitmq-server $S"
fi
rm -f "$RABBIT_DIR/server.pid"

E=$(cat "$RABBIT_DIR/epmd.pid" 2>/dev/null || true)
if alive "$E"; then
  kill -TERM "$E" 2>/dev/null && echo "stopped epmd $E"
fi
rm -f "$RABBIT_DIR/epmd.pid"
exit 0

#!/usr/bin/env bash
# rabbitmqctl against the node started by start.sh (same environment), e.g.
#   ./ctl.sh status ; ./ctl.sh await_startup ; ./ctl.sh list_queues
D=$(cd "$(dirname "$0")" && pwd)
: "${ERL_EPMD_PORT:=4369}" "${RABBIT_DIR:=$D/var}" "${RABBIT_NODENAME:=rabbit@localhost}"
RABBIT_DIR=$(cd "$RABBIT_DIR" && pwd)
export ERL_EPMD_PORT ERL_EPMD_ADDRESS=127.0.0.1 HOME="$RABBIT_DIR/home" RABBITMQ_NODENAME="$RABBIT_NODENAME" \
  RABBITMQ_CTL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
exec /usr/lib/rabbitmq/bin/rabbitmqctl -n "$RABBIT_NODENAME" "$@"

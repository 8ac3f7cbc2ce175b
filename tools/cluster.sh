#!/usr/bin/env bash
# Starts a local 3-member MetaStore cluster on loopback for trying things out:
#   tools/cluster.sh start   # members m0 m1 m2, clients on 127.0.0.1:32379/32479/32579
#   tools/cluster.sh status  # etcdctl endpoint status --cluster -w table
#   tools/cluster.sh stop    # stops the members this script started (by their PIDs)
# Data and logs live in ${CLUSTER_DIR:-/tmp/metastore-cluster}. Set METASTORE to another binary
# (or to /usr/bin/etcd, to compare) if you like.
set -euo pipefail
dir=${CLUSTER_DIR:-/tmp/metastore-cluster}
bin=${METASTORE:-${CARGO_TARGET_DIR:-$HOME/.cache/metastore/target}/release/metastore}
clients=(32379 32479 32579)
peers=(32380 32480 32580)
initial="m0=http://127.0.0.1:${peers[0]},m1=http://127.0.0.1:${peers[1]},m2=http://127.0.0.1:${peers[2]}"
endpoints="127.0.0.1:${clients[0]},127.0.0.1:${clients[1]},127.0.0.1:${clients[2]}"

start() {
  [ -x "$bin" ] || { echo "no binary at $bin: run 'make build' first" >&2; exit 1; }
  mkdir -p "$dir"
  for i in 0 1 2; do
    if [ -f "$dir/m$i.pid" ] && kill -0 "$(cat "$dir/m$i.pid")" 2>/dev/null; then
      echo "m$i already running (pid $(cat "$dir/m$i.pid"))"; continue
    fi
    "$(dirname "${BASH_SOURCE[0]}")/member.sh" "$bin" "m$i" "$dir/m$i" "http://127.0.0.1:${clients[$i]}" \
      "http://127.0.0.1:${peers[$i]}" "$initial" --initial-cluster-token local-cluster >"$dir/m$i.log" 2>&1 &
    echo $! >"$dir/m$i.pid"
  done
  for _ in $(seq 1 100); do
    if etcdctl --endpoints="$endpoints" endpoint health >/dev/null 2>&1; then
      echo "cluster ready: etcdctl --endpoints=$endpoints member list"; return 0
    fi
    sleep 0.1
  done
  echo "cluster did not become healthy; logs in $dir" >&2; exit 1
}

stop() {
  for i in 0 1 2; do
    if [ -f "$dir/m$i.pid" ]; then kill "$(cat "$dir/m$i.pid")" 2>/dev/null || true; rm -f "$dir/m$i.pid"; fi
  done
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  status) etcdctl --endpoints="$endpoints" endpoint status --cluster -w table ;;
  *) echo "usage: $0 start|status|stop" >&2; exit 2 ;;
esac

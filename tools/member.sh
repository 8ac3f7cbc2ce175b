#!/usr/bin/env bash
# The one launcher of a cluster member, for every test and tool (tests/common, the etcdctl
# differential scripts, the benchmark harness, tools/cluster.sh): it knows the flags a member
# needs and execs the server binary in its place, so the caller's child PID is the member's.
#
#   tools/member.sh BIN NAME DATA_DIR CLIENT_URL PEER_URL INITIAL_CLUSTER [more etcd flags...]
#
# BIN is `metastore` or real etcd (/usr/bin/etcd): both take etcd's flags. The member listens for
# peers on PEER_URL and advertises MEMBER_ADVERTISE_PEER_URL if set (a proxy in front of it, as the
# robustness suite's network faults use), else PEER_URL.
set -euo pipefail
if [ $# -lt 6 ]; then
  sed -n '2,8p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
fi
bin=$1 name=$2 data_dir=$3 client_url=$4 peer_url=$5 initial_cluster=$6
shift 6
exec "$bin" --name "$name" --data-dir "$data_dir" \
  --listen-client-urls "$client_url" --advertise-client-urls "$client_url" \
  --listen-peer-urls "$peer_url" --initial-advertise-peer-urls "${MEMBER_ADVERTISE_PEER_URL:-$peer_url}" \
  --initial-cluster "$initial_cluster" "$@"

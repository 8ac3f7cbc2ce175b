#!/usr/bin/env bash
# Start an etcd-compatible server binary as a fresh 3-member cluster
# (m0 m1 m2), run one etcdctl script against all three client URLs and
# print a normalised transcript on stdout. See tools/compat/README.md
# ("Cluster scripts").
#
#   run-cluster-script.sh --server <binary> --script <file> [--etcdctl <binary>]
#                 [--ready-timeout <s>] [--timeout <s>] [--raw] [--keep-logs <dir>]
#
# Exit status: 0 when a transcript was produced; 2 on usage errors;
# 3 when the cluster did not become healthy; other non-zero on harness errors.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

server=""
script=""
etcdctl=${ETCDCTL_BIN:-/usr/bin/etcdctl}
ready_timeout=60
total_timeout=600
raw=""
keep_logs=""
names=(m0 m1 m2)
token=compat-cluster

usage() {
    sed -n '2,11p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

while [[ $# -gt 0 ]]; do
    case $1 in
        --server) server=${2:?}; shift 2 ;;
        --script) script=${2:?}; shift 2 ;;
        --etcdctl) etcdctl=${2:?}; shift 2 ;;
        --ready-timeout) ready_timeout=${2:?}; shift 2 ;;
        --timeout) total_timeout=${2:?}; shift 2 ;;
        --raw) raw=--raw; shift ;;
        --keep-logs) keep_logs=${2:?}; shift 2 ;;
        -h|--help) usage ;;
        *) echo "run-cluster-script: unknown argument: $1" >&2; usage ;;
    esac
done
[[ -n $server && -n $script ]] || usage
[[ -x $server ]] || { echo "run-cluster-script: server binary not executable: $server" >&2; exit 2; }
[[ -x $etcdctl ]] || { echo "run-cluster-script: etcdctl not executable: $etcdctl" >&2; exit 2; }
[[ -r $script ]] || { echo "run-cluster-script: cannot read script: $script" >&2; exit 2; }

python3 "$here/cluster_runner.py" --members x --script "$script" --check >/dev/null

workdir=$(mktemp -d "${TMPDIR:-/tmp}/compat-cluster.XXXXXX")
pids=()
runner_pid=""

alive() {
    local st
    st=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
    [[ -n $st && $st != Z* ]]
}

stop_servers() {
    local pid i
    for pid in "${pids[@]}"; do
        alive "$pid" && kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        for ((i = 0; i < 100; i++)); do
            alive "$pid" || break
            sleep 0.1
        done
        alive "$pid" && kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    pids=()
}

cleanup() {
    local rc=$?
    set +e
    if [[ -n $runner_pid ]] && alive "$runner_pid"; then
        kill -TERM "$runner_pid" 2>/dev/null
        wait "$runner_pid" 2>/dev/null
    fi
    stop_servers
    if [[ -n $keep_logs ]]; then
        mkdir -p "$keep_logs" && cp "$workdir"/*.log "$keep_logs"/ 2>/dev/null
    fi
    rm -rf "$workdir"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

free_ports() {  # n distinct free loopback ports, held open together while chosen
    python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
for s in socks:
    s.close()
EOF
}

start_cluster() {
    local ports i
    read -r -a ports <<<"$(free_ports 7)"
    client_urls=() peer_urls=()
    for i in 0 1 2; do
        client_urls+=("http://127.0.0.1:${ports[i]}")
        peer_urls+=("http://127.0.0.1:${ports[i + 3]}")
    done
    spare_peer_url="http://127.0.0.1:${ports[6]}"   # never listened on (m3 learner)
    initial_cluster=""
    for i in 0 1 2; do
        initial_cluster+="${initial_cluster:+,}${names[i]}=${peer_urls[i]}"
    done
    endpoints=$(IFS=,; echo "${client_urls[*]}")
    for i in 0 1 2; do
        rm -rf "$workdir/${names[i]}"
        "$here/../member.sh" "$server" "${names[i]}" "$workdir/${names[i]}" \
            "${client_urls[i]}" "${peer_urls[i]}" "$initial_cluster" \
            --initial-cluster-state new --initial-cluster-token "$token" \
            </dev/null >"$workdir/${names[i]}.log" 2>&1 &
        pids+=($!)
    done
}

# Ready when all three members have published their client URLs and are
# healthy: members publish one after the other after the election, and
# "endpoint health --cluster" only checks members whose client URLs are known.
healthy() {
    local n
    n=$(timeout 15 "$etcdctl" --endpoints="$endpoints" --dial-timeout=1s \
        --command-timeout=3s endpoint health --cluster 2>&1 | grep -c ' is healthy: ') || true
    [[ $n == 3 ]]
}

now_us() { echo "${EPOCHREALTIME/./}"; }

wait_ready() {
    local deadline=$(($(now_us) + ready_timeout * 1000000)) pid
    while (($(now_us) < deadline)); do
        for pid in "${pids[@]}"; do alive "$pid" || return 1; done
        healthy && return 0
        sleep 0.3
    done
    return 2
}

ready=""
for attempt in 1 2 3; do
    start_cluster
    if wait_ready; then ready=1; break; else why=$?; fi
    if ((why == 1)) && grep -qi 'address already in use' "$workdir"/*.log; then
        echo "run-cluster-script: port race on attempt $attempt, retrying" >&2
        stop_servers
        continue
    fi
    break
done
if [[ -z $ready ]]; then
    echo "run-cluster-script: cluster not healthy (within ${ready_timeout}s or a member exited)" >&2
    for n in "${names[@]}"; do
        echo "run-cluster-script: last lines of $n.log:" >&2
        tail -n 15 "$workdir/$n.log" >&2 || true
    done
    exit 3
fi

members=""
for i in 0 1 2; do
    members+="${members:+,}${names[i]}=${client_urls[i]}=${peer_urls[i]}"
done
members+=",m3==${spare_peer_url}"

timeout "$total_timeout" python3 "$here/cluster_runner.py" --etcdctl "$etcdctl" \
    --members "$members" --script "$script" $raw &
runner_pid=$!
set +e
wait "$runner_pid"
rc=$?
set -e
runner_pid=""
if ((rc != 0)); then
    echo "run-cluster-script: runner failed (exit $rc)" >&2
fi
exit "$rc"

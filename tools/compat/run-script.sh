#!/usr/bin/env bash
# Start an etcd-compatible server binary as a fresh single-member cluster,
# run one etcdctl script against it and print a normalised transcript on
# stdout. See tools/compat/README.md.
#
#   run-script.sh --server <binary> --script <file> [--etcdctl <binary>]
#                 [--ready-timeout <s>] [--timeout <s>] [--raw] [--keep-log <file>]
#
# Exit status: 0 when a transcript was produced (failing etcdctl commands
# are part of the transcript, not a harness failure); 2 on usage errors;
# 3 when the server did not become healthy; other non-zero on harness errors.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

server=""
script=""
etcdctl=${ETCDCTL_BIN:-/usr/bin/etcdctl}
ready_timeout=30     # seconds until the server must report healthy
total_timeout=600    # seconds for the whole script run
raw=""
keep_log=""

usage() {
    sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
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
        --keep-log) keep_log=${2:?}; shift 2 ;;
        -h|--help) usage ;;
        *) echo "run-script: unknown argument: $1" >&2; usage ;;
    esac
done
[[ -n $server && -n $script ]] || usage
[[ -x $server ]] || { echo "run-script: server binary not executable: $server" >&2; exit 2; }
[[ -x $etcdctl ]] || { echo "run-script: etcdctl not executable: $etcdctl" >&2; exit 2; }
[[ -r $script ]] || { echo "run-script: cannot read script: $script" >&2; exit 2; }

# Validate the script before starting anything.
python3 "$here/runner.py" --client-url x --script "$script" --check >/dev/null

workdir=$(mktemp -d "${TMPDIR:-/tmp}/compat.XXXXXX")
server_pid=""

# Extra server flags from the script's `#@server-flag <flag>` lines; `{WORKDIR}` in them is the
# run's scratch dir. `#@setup jwt-rs256` first makes an RS256 key pair there (jwt.key, jwt.pub).
server_flags=()
if grep -q '^#@setup jwt-rs256$' "$script"; then
    openssl genrsa -out "$workdir/jwt.key" 2048 2>/dev/null
    openssl rsa -in "$workdir/jwt.key" -pubout -out "$workdir/jwt.pub" 2>/dev/null
fi
while IFS= read -r flag; do
    server_flags+=("${flag//\{WORKDIR\}/$workdir}")
done < <(sed -n 's/^#@server-flag //p' "$script")
runner_pid=""

alive() {  # true while the process exists and is not a zombie
    local st
    st=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
    [[ -n $st && $st != Z* ]]
}

stop_server() {
    [[ -n $server_pid ]] || return 0
    if alive "$server_pid"; then
        kill -TERM "$server_pid" 2>/dev/null || true
        local i
        for ((i = 0; i < 100; i++)); do   # up to 10 s for a clean shutdown
            alive "$server_pid" || break
            sleep 0.1
        done
        if alive "$server_pid"; then
            kill -KILL "$server_pid" 2>/dev/null || true
        fi
    fi
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
}

cleanup() {
    local rc=$?
    set +e
    if [[ -n $runner_pid ]] && alive "$runner_pid"; then
        kill -TERM "$runner_pid" 2>/dev/null
        wait "$runner_pid" 2>/dev/null
    fi
    stop_server
    if [[ -n $keep_log && -f $workdir/server.log ]]; then
        cp "$workdir/server.log" "$keep_log"
    fi
    rm -rf "$workdir"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

free_ports() {  # two distinct free loopback ports, held open together while chosen
    python3 - <<'EOF'
import socket
socks = []
for _ in range(2):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
for s in socks:
    s.close()
EOF
}

healthy() {
    timeout 10 "$etcdctl" --endpoints="$client_url" --dial-timeout=1s \
        --command-timeout=2s endpoint health >/dev/null 2>&1
}

start_server() {
    local ports
    ports=$(free_ports)
    client_port=${ports% *}
    peer_port=${ports#* }
    client_url=http://127.0.0.1:$client_port
    peer_url=http://127.0.0.1:$peer_port
    rm -rf "$workdir/data"
    "$here/../member.sh" "$server" n1 "$workdir/data" "$client_url" "$peer_url" "n1=$peer_url" \
        ${server_flags[@]+"${server_flags[@]}"} </dev/null >"$workdir/server.log" 2>&1 &
    server_pid=$!
}

now_us() { echo "${EPOCHREALTIME/./}"; }

wait_ready() {
    local deadline=$(($(now_us) + ready_timeout * 1000000))
    while (($(now_us) < deadline)); do
        alive "$server_pid" || return 1
        healthy && return 0
        sleep 0.2
    done
    return 2
}

ready=""
for attempt in 1 2 3; do
    start_server
    if wait_ready; then
        ready=1
        break
    else
        why=$?
    fi
    if ((why == 1)) && grep -qi 'address already in use' "$workdir/server.log"; then
        echo "run-script: port race on attempt $attempt, retrying with new ports" >&2
        stop_server
        continue
    fi
    break
done
if [[ -z $ready ]]; then
    if alive "$server_pid"; then
        echo "run-script: server not healthy after ${ready_timeout}s" >&2
    else
        echo "run-script: server exited before becoming healthy" >&2
    fi
    echo "run-script: last lines of the server log:" >&2
    tail -n 30 "$workdir/server.log" >&2 || true
    exit 3
fi

# In the background so that INT/TERM traps run at once instead of after it.
timeout "$total_timeout" python3 "$here/runner.py" --etcdctl "$etcdctl" \
    --client-url "$client_url" --peer-url "$peer_url" --script "$script" $raw &
runner_pid=$!
set +e
wait "$runner_pid"
rc=$?
set -e
runner_pid=""
if ((rc != 0)); then
    echo "run-script: runner failed (exit $rc)" >&2
fi
exit "$rc"

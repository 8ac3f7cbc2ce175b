#!/usr/bin/env bash
# Differential test: run etcdctl scripts against two server binaries and
# diff the normalised transcripts.
#
#   diff.sh [-o <dir>] <server-a> <server-b> [script...]
#
# Scripts default to tools/compat/*.script; cluster*.script are run with
# run-cluster-script.sh (3 members). Servers run one after the other
# (each on its own fresh data dir and free ports). With -o the transcripts
# are kept as <dir>/<script>.a.txt and <dir>/<script>.b.txt.
#
# Exit status: 0 all transcripts identical; 1 some differ (unified diff on
# stdout); 2 usage error or a harness failure (server did not start, ...).
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

usage() {
    sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

outdir=""
while [[ $# -gt 0 ]]; do
    case $1 in
        -o) outdir=${2:?}; shift 2 ;;
        -h|--help) usage ;;
        --) shift; break ;;
        -*) echo "diff.sh: unknown option: $1" >&2; usage ;;
        *) break ;;
    esac
done
[[ $# -ge 2 ]] || usage
server_a=$1
server_b=$2
shift 2
if [[ $# -gt 0 ]]; then
    scripts=("$@")
else
    shopt -s nullglob
    scripts=("$here"/*.script)
    shopt -u nullglob
fi
[[ ${#scripts[@]} -gt 0 ]] || { echo "diff.sh: no scripts" >&2; exit 2; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/compat-diff.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
if [[ -n $outdir ]]; then
    mkdir -p "$outdir" || exit 2
else
    outdir=$tmp
fi

status=0
for script in "${scripts[@]}"; do
    name=$(basename "$script" .script)
    runner_sh=$here/run-script.sh
    case $name in   # cluster*.script run against a 3-member cluster
        cluster*) runner_sh=$here/run-cluster-script.sh ;;
    esac
    a=$outdir/$name.a.txt
    b=$outdir/$name.b.txt
    echo "== $name: $server_a" >&2
    if ! "$runner_sh" --server "$server_a" --script "$script" >"$a"; then
        echo "diff.sh: harness failed for $server_a on $script" >&2
        exit 2
    fi
    echo "== $name: $server_b" >&2
    if ! "$runner_sh" --server "$server_b" --script "$script" >"$b"; then
        echo "diff.sh: harness failed for $server_b on $script" >&2
        exit 2
    fi
    if diff -u --label "$name @ A: $server_a" --label "$name @ B: $server_b" "$a" "$b"; then
        echo "== $name: identical ($(grep -c '^### ' "$a") commands)" >&2
    else
        echo "== $name: DIFFERENT" >&2
        status=1
    fi
done
if ((status == 0)); then
    echo "no difference" >&2
fi
exit "$status"

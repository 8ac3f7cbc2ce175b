#!/usr/bin/env bash
# Run etcd 3.4.23's own end-to-end test suite (go.etcd.io/etcd/tests/e2e) with
# an arbitrary server binary standing in for `etcd`.
#
#   tools/etcd-e2e.sh --etcd <server-binary> [--run <regex>] [--timeout 30m]
#                     [--etcdctl <path>] [--log <file>] [--keep] [--rebuild]
#                     [--no-proc-output]
#                     [-- <extra test-binary flags, e.g. -test.count 2>]
#
#   --etcd      server binary under test; copied into a private bin dir as `etcd`
#   --run       go test -run regex (default: every test in the suite)
#   --timeout   go test -timeout for the whole run (default 30m)
#   --etcdctl   etcdctl to use (default /usr/bin/etcdctl, Debian's etcd-client)
#   --log       where to keep the full verbose output
#               (default ${XDG_CACHE_HOME:-$HOME/.cache}/metastore/e2e/last-run.log)
#   --keep      keep the per-run scratch dir (server data dirs, snapshots)
#   --rebuild   rebuild the cached e2e test binary
#   --no-proc-output  do not capture what etcd/etcdctl print (EXPECT_DEBUG=1 is
#               set by default; that output is shown only for failing tests)
#
# The e2e test binary is built once (GOPATH mode, offline, from Debian's
# golang-etcd-server-dev source) and cached under
# ${XDG_CACHE_HOME:-$HOME/.cache}/metastore/e2e/<etcd source version>/.
# Missing Debian packages (golang-go, golang-etcd-server-dev, etcd-client) are
# installed with apt-get. Tests use fixed ports 20000-20016 on localhost.
#
# Output: one line per passing test, the complete output of failing tests
# (including every line etcd and etcdctl printed, as "<bin>-<pid>: ..."),
# then a summary line "e2e: N passed, N failed, N skipped".
# Exit status: 0 all selected tests passed; 1 a test failed, the run timed out
# or no test matched; 2 usage or setup error.
set -uo pipefail

ETCD_SRC=/usr/share/gocode/src/go.etcd.io/etcd
GO=/usr/bin/go

usage() {
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}" >&2
    exit 2
}
die() { echo "etcd-e2e: $*" >&2; exit 2; }
note() { echo "etcd-e2e: $*" >&2; }

etcd_bin=""
run_re="."
timeout="30m"
etcdctl_bin=/usr/bin/etcdctl
keep=0
rebuild=0
proc_output=1
cache_root="${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/metastore/e2e"
log=""
while [[ $# -gt 0 ]]; do
    case $1 in
        --etcd) etcd_bin=${2:?--etcd needs a path}; shift 2 ;;
        --etcd=*) etcd_bin=${1#*=}; shift ;;
        --run) run_re=${2:?--run needs a regex}; shift 2 ;;
        --run=*) run_re=${1#*=}; shift ;;
        --timeout) timeout=${2:?--timeout needs a duration}; shift 2 ;;
        --timeout=*) timeout=${1#*=}; shift ;;
        --etcdctl) etcdctl_bin=${2:?--etcdctl needs a path}; shift 2 ;;
        --etcdctl=*) etcdctl_bin=${1#*=}; shift ;;
        --log) log=${2:?--log needs a path}; shift 2 ;;
        --log=*) log=${1#*=}; shift ;;
        --keep) keep=1; shift ;;
        --rebuild) rebuild=1; shift ;;
        --no-proc-output) proc_output=0; shift ;;
        -h|--help) usage ;;
        --) shift; break ;;
        *) echo "etcd-e2e: unknown argument: $1" >&2; usage ;;
    esac
done
extra_args=("$@")
[[ -n $etcd_bin ]] || usage
[[ -f $etcd_bin && -x $etcd_bin ]] || die "--etcd $etcd_bin: not an executable file"
etcd_bin=$(realpath "$etcd_bin")

# ---------------------------------------------------------------- packages
pkg_installed() {
    [[ $(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null) == installed ]]
}
missing=()
pkg_installed golang-go || [[ -x $GO ]] || missing+=(golang-go)
pkg_installed golang-etcd-server-dev && [[ -d $ETCD_SRC/tests/e2e ]] || missing+=(golang-etcd-server-dev)
if [[ $etcdctl_bin == /usr/bin/etcdctl ]] && ! [[ -x /usr/bin/etcdctl ]]; then
    missing+=(etcd-client)
fi
if [[ ${#missing[@]} -gt 0 ]]; then
    [[ $(id -u) -eq 0 ]] || die "missing Debian packages (${missing[*]}); run as root or install them"
    note "installing ${missing[*]} with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null; then
        apt-get update -q >/dev/null || true
        apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null ||
            die "apt-get install ${missing[*]} failed"
    fi
fi
[[ -x $GO ]] || die "$GO not found (golang-go)"
[[ -d $ETCD_SRC/tests/e2e && -d $ETCD_SRC/integration/fixtures ]] ||
    die "$ETCD_SRC/tests/e2e or integration/fixtures missing (golang-etcd-server-dev)"
[[ -x $etcdctl_bin ]] || die "etcdctl $etcdctl_bin not found (etcd-client)"

# ---------------------------------------------------------------- build (cached)
mkdir -p "$cache_root" || die "cannot create $cache_root"
exec 9>"$cache_root/.lock"
if ! flock -n 9; then
    note "waiting for another etcd-e2e run to finish (lock $cache_root/.lock)"
    flock 9
fi

etcd_version=$(sed -n 's/^[[:space:]]*Version[[:space:]]*=[[:space:]]*"\([^"]*\)".*/\1/p' "$ETCD_SRC/version/version.go" | head -n1)
[[ -n $etcd_version ]] || die "cannot read etcd version from $ETCD_SRC/version/version.go"
deb_version=$(dpkg-query -W -f='${Version}' golang-etcd-server-dev 2>/dev/null | tr -c 'A-Za-z0-9.+~\n-' '_')
go_version=$("$GO" env GOVERSION 2>/dev/null || echo unknown)
src_sum=$(cat "$ETCD_SRC"/tests/e2e/*.go | sha256sum | cut -c1-12)
key="etcd-${etcd_version}_deb-${deb_version:-none}_${go_version}_${src_sum}"
build_dir="$cache_root/$key"
test_bin="$build_dir/e2e.test"

if [[ $rebuild -eq 1 || ! -x $test_bin || ! -d $build_dir/integration/fixtures ]]; then
    note "building e2e test binary for etcd $etcd_version ($key); takes ~1 min"
    rm -rf "$cache_root"/build.*    # left by an interrupted build (we hold the lock)
    tmp_build=$(mktemp -d "$cache_root/build.XXXXXX") || die "mktemp failed"
    gp="$tmp_build/gopath"
    mkdir -p "$gp/src/go.etcd.io/etcd/tests" "$tmp_build/out/integration"
    cp -r "$ETCD_SRC/tests/e2e" "$gp/src/go.etcd.io/etcd/tests/e2e"
    cp -r "$ETCD_SRC/integration/fixtures" "$tmp_build/out/integration/fixtures"
    start=$SECONDS
    if ! (cd "$gp/src/go.etcd.io/etcd/tests/e2e" &&
          env -u GOFLAGS GO111MODULE=off GOPATH="$gp:/usr/share/gocode" GOPROXY=off \
              CGO_ENABLED=0 nice -n 10 "$GO" test -c -o "$tmp_build/out/e2e.test" .) \
          >"$tmp_build/build.log" 2>&1; then
        cat "$tmp_build/build.log" >&2
        rm -rf "$tmp_build"
        die "building the e2e test binary failed"
    fi
    rm -rf "$build_dir" "$gp"
    mv "$tmp_build/out" "$build_dir"
    mv "$tmp_build/build.log" "$build_dir/build.log"
    rm -rf "$tmp_build"
    note "built $test_bin in $((SECONDS - start))s"
    # drop binaries built for other etcd sources/toolchains
    for d in "$cache_root"/etcd-*; do
        [[ -d $d && $d != "$build_dir" ]] && rm -rf "$d"
    done
fi

# ---------------------------------------------------------------- run dir
run_dir=$(mktemp -d "${TMPDIR:-/tmp}/etcd-e2e.XXXXXX") || die "mktemp failed"
mkdir -p "$run_dir/bin" "$run_dir/tests/e2e" "$run_dir/integration" "$run_dir/tmp"
# Copies (not symlinks): the binary under test cannot change under a running
# suite, and leftover processes can be found by their exact executable path.
cp "$etcd_bin" "$run_dir/bin/etcd" || die "cannot copy $etcd_bin"
cp "$(realpath "$etcdctl_bin")" "$run_dir/bin/etcdctl" || die "cannot copy $etcdctl_bin"
# The suite resolves fixtures as ../../integration/fixtures from its cwd.
ln -s "$build_dir/integration/fixtures" "$run_dir/integration/fixtures"

# Kill only processes started from this run's bin dir (etcd members run in
# their own sessions and outlive the test binary if it dies or times out).
# shellcheck disable=SC2317  # (called from the EXIT trap)
kill_leftovers() {
    local p exe pids=()
    for p in /proc/[0-9]*; do
        exe=$(readlink "$p/exe" 2>/dev/null) || continue
        if [[ $exe == "$run_dir/bin/etcd" || $exe == "$run_dir/bin/etcdctl" ]]; then
            pids+=("${p#/proc/}")
        fi
    done
    if [[ ${#pids[@]} -gt 0 ]]; then
        note "killing leftover processes from this run: ${pids[*]}"
        kill -9 "${pids[@]}" 2>/dev/null || true
    fi
}
# shellcheck disable=SC2317
cleanup() {
    kill_leftovers
    if [[ $keep -eq 1 ]]; then
        note "kept run dir $run_dir"
    else
        rm -rf "$run_dir"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

busy=()
for port in $(seq 20000 20016); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then busy+=("$port"); fi
done
if [[ ${#busy[@]} -gt 0 ]]; then
    note "ports already in use: ${busy[*]} (the suite needs 20000-20016)"
    command -v ss >/dev/null && ss -ltnp 2>/dev/null | grep -E ':200(0[0-9]|1[0-6])\b' >&2
    exit 2
fi

# ---------------------------------------------------------------- run
log=${log:-$cache_root/last-run.log}
mkdir -p "$(dirname "$log")"
note "etcd=$etcd_bin run=$run_re timeout=$timeout"
note "full log: $log"

# EXPECT_DEBUG=1 makes the harness echo every line that etcd and etcdctl print
# ("<bin>-<pid>: line"); it is shown only for failing tests. A process's last
# line may lack a newline and run into the next status line, so such lines are
# split before "--- PASS:" etc. The filter also writes the counts to $summary.
summary="$run_dir/summary"
# shellcheck disable=SC2016  # awk program
filter='
function strip(s,   i) {
    sub(/\r$/, "", s)
    while ((i = index(s, bindir)) > 0) s = substr(s, 1, i - 1) substr(s, i + length(bindir))
    return s
}
function flush_buf() { if (buf != "") printf "%s", buf; buf = "" }
function emit(l,   n) {
    if (panicked) {
        if (plines++ < maxp) print l
        else if (plines == maxp + 1) print "... (panic output truncated, see the full log)"
        return
    }
    if (l ~ /^panic: /) { flush_buf(); panicked = 1; plines = 1; print l; return }
    if (l ~ /^=== RUN   /) {
        n = substr(l, 11)
        if (index(n, "/") == 0) { flush_buf(); cur = n; done[n] = 0 }
        buf = buf l "\n"; return
    }
    if (l ~ /^--- (PASS|FAIL|SKIP): /) {
        n = l; sub(/^--- [A-Z]+: /, "", n); sub(/ .*$/, "", n); done[n] = 1
        if (l ~ /^--- FAIL/) { flush_buf(); nfail++; fails = fails " " n }
        else if (l ~ /^--- PASS/) npass++
        else nskip++
        buf = ""; cur = ""; print l; return
    }
    if (cur != "") { buf = buf l "\n"; return }
    print l
}
{
    l = strip($0)
    while (match(l, /[^ \t](--- (PASS|FAIL|SKIP): |=== RUN   |panic: test timed out after )/)) {
        emit(substr(l, 1, RSTART)); l = substr(l, RSTART + 1)
    }
    emit(l); fflush()
}
END {
    flush_buf()
    unf = ""
    if (cur != "" && !done[cur]) unf = cur
    printf "passed=%d\nfailed=%d\nskipped=%d\npanicked=%d\nfails=\"%s\"\nunfinished=\"%s\"\n", npass, nfail, nskip, panicked, fails, unf > summary
}
'

start=$SECONDS
(
    cd "$run_dir/tests/e2e" || exit 2
    exec 9>&-
    # Drop settings from the caller that would change etcd's / etcdctl's behaviour.
    for v in $(env | sed -n 's/^\(ETCD[A-Z0-9_]*\)=.*/\1/p'); do unset "$v"; done
    export TMPDIR="$run_dir/tmp"
    [[ $proc_output -eq 1 ]] && export EXPECT_DEBUG=1
    exec "$test_bin" -test.v -test.run "$run_re" -test.timeout "$timeout" \
        -bin-dir "$run_dir/bin" "${extra_args[@]}"
) 2>&1 | tee "$log" | awk -v maxp=150 -v bindir="$run_dir/bin/" -v summary="$summary" "$filter"
rc=${PIPESTATUS[0]}
elapsed=$((SECONDS - start))

passed=0 failed=0 skipped=0 panicked=0 fails="" unfinished=""
# shellcheck disable=SC1090
[[ -f $summary ]] && . "$summary"
# A test still running when the binary died (timeout panic, crash) counts as failed.
[[ -n $unfinished ]] && failed=$((failed + 1))
total=$((passed + failed + skipped))

echo
echo "==== etcd e2e summary ($etcd_bin, -run '$run_re', ${elapsed}s)"
if [[ $failed -gt 0 ]]; then
    echo "failed tests:"
    for t in $fails; do echo "  $t"; done
    [[ -n $unfinished ]] && echo "  $unfinished (did not finish)"
fi
[[ $panicked -eq 1 ]] && echo "the test binary panicked: $(grep -m1 'panic: ' "$log")"
[[ $rc -ne 0 && $failed -eq 0 ]] && echo "test binary exited with status $rc (see $log)"
[[ $total -eq 0 ]] && echo "no test matched -run '$run_re'"
echo "e2e: $passed passed, $failed failed, $skipped skipped"

if [[ $rc -ne 0 || $failed -gt 0 || $total -eq 0 ]]; then
    exit 1
fi
exit 0

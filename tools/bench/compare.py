#!/usr/bin/env python3
"""Side-by-side benchmark: etcd 3.4.23 and MetaStore on this machine's loopback.

    tools/bench/compare.py --bench BIN --metastore BIN [--etcd /usr/bin/etcd] [--quick]
                           [--out docs/benchmarks.md] [--json-out FILE] [--only ID,ID]
                           [--skip floor,single,cluster,scale,scan,auth,gateway,defrag] [--sections scan] [--keep]

Sections, in order:
  floor    fdatasync latency of the data disk and loopback TCP round trip.
  single   one member of each server, started side by side with fresh data dirs; every
           workload of harness/plan.py runs against both in alternation (etcd first on even
           rows, MetaStore first on odd ones); then each server's peak RSS and data-dir size.
  cluster  3 members of etcd with the same workloads' subset; MetaStore is single-member only,
           so its column records what its binary does with a 3-member --initial-cluster.
  scale    a fresh server of each kind loaded with N keys (16-byte keys, 256-byte values;
           1,000,000 in full mode), then RSS, data-dir size, restart time to serving, and
           point-get and 1,000-key-prefix latency after the restart.
  scan     reads under writes: a fresh server of each kind (1 member, then 3) loaded
           with N keys (1,000,000 in full mode, 100,000 in quick), then `put-under-scan`: puts
           from 10 clients without, then with, a linearizable full-keyspace Range looping
           (`get --prefix ""`); write p50/p99/max both ways, scans completed, raft term before
           and after (a change means an election).
  gateway  JSON put and range over HTTP (`/v3/kv/put`, `/v3/kv/range`) against etcd's grpc-gateway and
           MetaStore's, a fresh single member of each, from 16 Python keep-alive clients
           (harness/gateway.py).
  auth     a fresh member of each kind per configuration (auth off; on with simple tokens; on
           with RS256 JWTs, key pair made with openssl in the run's scratch dir), users made with
           etcdctl (root, and a non-root user with a readwrite grant on the keys used); put and
           range from 100 clients as that user; then one put client alone and while 100 clients
           call Authenticate in a loop (does a login storm stall other clients?).
  defrag   a fresh member of each kind loaded with N keys (1,000,000 in full mode, 100,000 in
           quick), then `put-under-defrag`: puts from 10 clients for a phase, then for another
           phase with a Defragment sent 2 s in; write p99/max of the puts that overlapped the
           defragment against the first phase, and how long the defragment took.

With --sections (e.g. `--sections scan`) only those sections run; when --out already exists, the
run's sections replace their own parts of it (or are added before "## Failures") and the rest
of the document is kept as it was.

Everything is bounded: each run has a --duration (or a --total under a --duration cap), each
subprocess a timeout, and every server is stopped by its PID on the way out, error or not.
Prints the tables and writes them to --out with the machine description and exact commands.
"""

import argparse
import concurrent.futures
import datetime
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
from harness import doc, gateway, plan, servers, stages  # noqa: E402


class Bench:
    """Runs `metastore-bench --json` and returns its report (or a `harness_error`)."""

    def __init__(self, binary, duration):
        self.binary, self.duration = binary, duration
        self.commands = []  # (id, argv with $EP) for the document

    def argv(self, args, duration=None):
        d = duration or self.duration
        return ["--json", "--no-progress", "--duration", f"{d}s", *args]

    def run(self, endpoints, args, wid=None, duration=None, record=True, timeout=None):
        argv = self.argv(args, duration)
        if record and wid and wid not in {c[0] for c in self.commands}:
            self.commands.append((wid, ["metastore-bench", "--endpoints", "$EP", *argv]))
        timeout = timeout or (duration or self.duration) + 240
        try:
            out = subprocess.run([self.binary, "--endpoints", endpoints, *argv], capture_output=True, text=True,
                                 timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"harness_error": f"timed out after {timeout}s"}
        if out.returncode != 0:
            return {"harness_error": (out.stderr.strip().splitlines() or ["exit %d" % out.returncode])[-1][:200]}
        return json.loads(out.stdout)


def checked(bench, cluster, name, args, wid, duration=None):
    """Runs one workload; if a member died during it, says so in the report and restarts it. The
    report gains `cpu`: CPU seconds the servers (all members) and the load generator used in it."""
    server_before = cluster.cpu_seconds()
    client_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    r = bench.run(cluster.endpoints, args, wid, duration=duration)
    client_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_after = cluster.cpu_seconds()
    if server_before is not None and server_after is not None:
        client = (client_after.ru_utime + client_after.ru_stime) - (client_before.ru_utime + client_before.ru_stime)
        r = {**r, "cpu": {"server_s": server_after - server_before, "client_s": client}}
    dead = [m for m in cluster.members if not m.alive()]
    if dead:
        why = "; ".join(f"{m.name} exited with status {m.proc.returncode}: {m.log_tail(1)}" for m in dead)
        r = {**r, "harness_error": f"server exited during the run ({why})"}
        log(f"  {name}: {why}; restarting it")
        cluster.stop()
        cluster.start()
    return r


def staged(bench, cluster, name, args, wid, split=None):
    """`checked`, and for the rows in `stages.ROWS` the split of one put from the members' metrics."""
    if not (wid in stages.ROWS if split is None else split):
        return checked(bench, cluster, name, args, wid)
    before = stages.snapshot(cluster, servers.metrics)
    r = checked(bench, cluster, name, args, wid)
    return {**r, "stages": stages.breakdown(before, stages.snapshot(cluster, servers.metrics), r)}


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def summary(r):
    if "harness_error" in r:
        return "ERROR " + r["harness_error"]
    lat = r.get("latency_ms", {})
    errs = sum(r.get("errors", {}).values())
    return f"{r.get('throughput', 0):,.0f}/s p50 {lat.get('p50', 0):.2f} p99 {lat.get('p99', 0):.2f} ms, {errs} failed"


def run_single(bench, opts, workdir, live):
    single = os.path.join(workdir, "single")
    etcd = servers.Cluster("etcd", opts.etcd, single, 1, bench.binary, stages.FLAGS)
    ms = servers.Cluster("metastore", opts.metastore, single, 1, bench.binary, stages.FLAGS)
    live += [etcd, ms]
    etcd.start()
    ms.start()
    results = {}
    work = [w for w in plan.matrix(opts.mode) if not opts.only or w[0] in opts.only]
    for i, (wid, _title, glob, sub, _kind, _full) in enumerate(work):
        order = [("etcd", etcd), ("metastore", ms)]
        if i % 2:
            order.reverse()
        for name, c in order:
            r = staged(bench, c, name, [*glob, *sub], wid)
            results.setdefault(wid, {})[name] = r
            log(f"  [{i + 1}/{len(work)}] {wid:<16} {name:<9} {summary(r)}")
            etcd.sample_rss()
            ms.sample_rss()
            time.sleep(1)
    resources = {}
    for name, c in (("etcd", etcd), ("metastore", ms)):
        alloc, apparent = c.data_size()
        resources[name] = {"peak_rss_kib": c.peak_rss_kib(), "data_alloc": alloc, "data_apparent": apparent}
    etcd.stop()
    ms.stop()
    return {"workloads": results, "resources": resources, "plan": work}


def run_cluster(bench, opts, workdir, live):
    """etcd x3 always; MetaStore x3 when its binary forms a 3-member cluster within 30 s."""
    etcd = servers.Cluster("etcd", opts.etcd, os.path.join(workdir, "etcd3"), 3, bench.binary, stages.FLAGS)
    live.append(etcd)
    etcd.start()
    ms = servers.Cluster("metastore", opts.metastore, os.path.join(workdir, "ms3"), 3, bench.binary, stages.FLAGS)
    live.append(ms)
    note = None
    try:
        ms.start(wait=30)
    except RuntimeError as e:
        note = str(e)
        ms.stop()
        log(f"  metastore x3 not started: {note}")
    sides = [("etcd", etcd)] + ([("metastore", ms)] if note is None else [])
    results = {}
    work = [w for w in plan.cluster_matrix(opts.mode) if not opts.only or w[0] in opts.only]
    for i, (wid, _title, glob, sub, _kind) in enumerate(work):
        order = sides if i % 2 == 0 else sides[::-1]
        for name, c in order:
            r = staged(bench, c, name, [*glob, *sub], "3m-" + wid, split=wid in stages.ROWS)
            results.setdefault(wid, {})[name] = r
            log(f"  [{i + 1}/{len(work)}] {wid:<16} {name:<9} x3 {summary(r)}")
            time.sleep(1)
    peaks = {name: c.peak_rss_kib() for name, c in sides}
    etcd.stop()
    ms.stop()
    return {"workloads": results, "metastore_note": note, "plan": work, "peak_rss_kib": peaks}


def run_scale(bench, opts, workdir, live):
    keys = opts.scale_keys or plan.MODES[opts.mode]["scale_keys"]
    cap = plan.scale_load_cap(opts.mode, keys)
    out = {"keys": keys, "custom": bool(opts.scale_keys)}
    for name, binary in (("etcd", opts.etcd), ("metastore", opts.metastore)):
        c = servers.Cluster(name, binary, os.path.join(workdir, "scale"), 1, bench.binary, plan.SCALE_FLAGS)
        live.append(c)
        c.start()
        load = bench.run(c.endpoints, plan.scale_load_args(keys), "scale-load", duration=cap)
        loaded = 100 * load.get("ok", 0)
        log(f"  scale {name:<9} load {summary(load)} ({loaded:,} keys)")
        time.sleep(2)
        rss_loaded = c.sample_rss()[0]
        memory = servers.storage_memory(c.endpoints)
        alloc, apparent = c.data_size()
        restart_s = c.restart(wait=max(300, keys // 10_000))
        rss_restarted = c.sample_rss()[0]
        log(f"  scale {name:<9} restart {restart_s:.2f}s, RSS {rss_loaded} KiB loaded, storage memory {memory}")
        reads = {}
        for rid, _title, args in plan.scale_reads(keys):
            reads[rid] = bench.run(c.endpoints, args, rid)
            log(f"  scale {name:<9} {rid:<13} {summary(reads[rid])}")
        out[name] = {
            "load": load, "loaded_keys": min(loaded, keys), "rss_loaded_kib": rss_loaded,
            "peak_rss_kib": c.peak_rss_kib(), "data_alloc": alloc, "data_apparent": apparent,
            "restart_s": restart_s, "rss_restarted_kib": rss_restarted, "reads": reads,
            "storage_memory": memory, "storage_memory_restarted": servers.storage_memory(c.endpoints),
        }
        c.stop()
        shutil.rmtree(os.path.join(workdir, "scale"), ignore_errors=True)
    return out


def with_deaths(cluster, r):
    """Report `r` of a run on `cluster`, marked as a harness error if a member died meanwhile, with the
    cluster's peak RSS."""
    dead = [m for m in cluster.members if not m.alive()]
    if dead:
        why = "; ".join(f"{m.name} exited with status {m.proc.returncode}: {m.log_tail(1)}" for m in dead)
        r = {**r, "harness_error": f"server exited during the run ({why})"}
    r["peak_rss_kib"] = cluster.peak_rss_kib()
    return r


def run_scan(bench, opts, workdir, live):
    """put-under-scan on a fresh server of each kind per cluster size (etcd first for 1 member,
    MetaStore first for 3); a server that did not start or died is reported, not retried."""
    cfg = plan.MODES[opts.mode]
    keys, duration = cfg["scan_keys"], cfg["scan_duration"]
    out = {"keys": keys, "duration": duration, "sizes": list(cfg["scan_sizes"]), "runs": {}}
    for i, size in enumerate(cfg["scan_sizes"]):
        order = [("etcd", opts.etcd), ("metastore", opts.metastore)]
        for name, binary in order if i % 2 == 0 else order[::-1]:
            wid = f"scan-{size}m"
            base = os.path.join(workdir, wid)
            c = servers.Cluster(name, binary, base, size, bench.binary)
            live.append(c)
            try:
                c.start(wait=30 if size > 1 else 60)
            except RuntimeError as e:
                out["runs"].setdefault(wid, {})[name] = {"harness_error": f"did not start: {e}"}
                log(f"  scan x{size} {name:<9} did not start: {e}")
                c.stop()
                continue
            r = with_deaths(c, bench.run(c.endpoints, plan.scan_args(keys, size), wid, duration=duration,
                                         timeout=cfg["scan_cap"]))
            out["runs"].setdefault(wid, {})[name] = r
            log(f"  scan x{size} {name:<9} {scan_summary(r)}")
            c.stop()
            shutil.rmtree(base, ignore_errors=True)
    return out


def run_defrag(bench, opts, workdir, live):
    """put-under-defrag on a fresh single member of each kind, etcd first; a server that did not
    start or died is reported, not retried."""
    cfg = plan.MODES[opts.mode]
    keys, duration = cfg["defrag_keys"], cfg["defrag_duration"]
    out = {"keys": keys, "duration": duration, "runs": {}}
    for name, binary in (("etcd", opts.etcd), ("metastore", opts.metastore)):
        base = os.path.join(workdir, "defrag")
        c = servers.Cluster(name, binary, base, 1, bench.binary)
        live.append(c)
        try:
            c.start(wait=60)
        except RuntimeError as e:
            out["runs"][name] = {"harness_error": f"did not start: {e}"}
            c.stop()
            continue
        r = with_deaths(c, bench.run(c.endpoints, plan.defrag_args(keys), "defrag", duration=duration,
                                     timeout=cfg["defrag_cap"]))
        out["runs"][name] = r
        log(f"  defrag {name:<9} {defrag_summary(r)}")
        c.stop()
        shutil.rmtree(base, ignore_errors=True)
    return out


def defrag_summary(r):
    if "harness_error" in r:
        return "ERROR " + r["harness_error"]
    e = r.get("extra", {})
    base, during = e.get("baseline", {}).get("latency_ms", {}), e.get("during_defrag", {}).get("latency_ms", {})
    return (f"load {e.get('load_s', 0):.0f}s; defrag {e.get('defrag_ms', 0):.0f} ms; put p99 {base.get('p99', 0):.2f} "
            f"ms before, {during.get('p99', 0):.2f} ms during (max {base.get('max', 0):.1f} / "
            f"{during.get('max', 0):.1f} ms)")


def jwt_keys(directory):
    """An RS256 key pair made with openssl in `directory`; returns (public, private) paths."""
    os.makedirs(directory, exist_ok=True)
    private, public = os.path.join(directory, "jwt.key"), os.path.join(directory, "jwt.pub")
    for argv in (["openssl", "genrsa", "-out", private, "2048"], ["openssl", "rsa", "-in", private, "-pubout", "-out", public]):
        subprocess.run(argv, check=True, capture_output=True, timeout=60)
    return public, private


def enable_auth(etcdctl, cluster):
    """Creates the users and roles of plan.auth_setup and enables auth, with etcdctl."""
    for cmd in plan.auth_setup():
        out = subprocess.run([etcdctl, "--endpoints", cluster.endpoints, *cmd], capture_output=True, text=True,
                             timeout=30)
        if out.returncode != 0:
            raise RuntimeError(f"{cluster.kind}: etcdctl {' '.join(cmd)}: {out.stderr.strip()[:200]}")


def stall_check(bench, cluster, user, mode, duration):
    """One put client alone, then the same while plan.AUTH_STORM runs beside it (started
    AUTH_STORM_LEAD s before). Returns {"alone", "storm", "with_storm", "storm_covered_puts"}."""
    put = [*user, *plan.AUTH_STALL_PUT]
    out = {"alone": bench.run(cluster.endpoints, put, f"auth-{mode}-stall-put", duration=duration)}
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        storm = pool.submit(bench.run, cluster.endpoints, [*user, *plan.AUTH_STORM], f"auth-{mode}-stall-storm",
                            duration=duration + plan.AUTH_STORM_EXTRA)
        time.sleep(plan.AUTH_STORM_LEAD)
        out["with_storm"] = bench.run(cluster.endpoints, put, f"auth-{mode}-stall-put", duration=duration)
        puts_done = time.monotonic()
        out["storm"] = storm.result()
        # The storm's process ends about a second after its last request: if it ended before the
        # puts did, part of the timed puts ran without it.
        out["storm_covered_puts"] = time.monotonic() - puts_done > 0.5
    return out


def run_auth(bench, opts, workdir, live):
    """Per auth configuration: a fresh member of each kind started side by side, users set up,
    the throughput workloads in alternating order, then (auth on) the stall check on each."""
    duration = plan.MODES[opts.mode]["auth_duration"]
    public, private = jwt_keys(os.path.join(workdir, "auth-keys"))
    out = {"duration": duration, "modes": [], "runs": {}, "stall": {}}
    row = 0
    for mode, title, flags, authenticated in plan.auth_modes(public, private):
        out["modes"].append((mode, title))
        base = os.path.join(workdir, f"auth-{mode}")
        sides = [(name, servers.Cluster(name, binary, base, 1, bench.binary, flags))
                 for name, binary in (("etcd", opts.etcd), ("metastore", opts.metastore))]
        for _name, c in sides:
            live.append(c)
            c.start()
            if authenticated:
                enable_auth(opts.etcdctl, c)
        user = plan.auth_user_args() if authenticated else []
        for wid, wtitle, glob, sub in plan.AUTH_WORKLOADS:
            for name, c in sides if row % 2 == 0 else sides[::-1]:
                r = checked(bench, c, name, [*user, *glob, *sub], f"auth-{mode}-{wid}", duration=duration)
                out["runs"].setdefault(f"{wid}-{mode}", {})[name] = r
                log(f"  auth {mode:<6} {wid:<6} {name:<9} {summary(r)}")
                time.sleep(1)
            row += 1
        if authenticated:
            for name, c in sides if row % 2 == 0 else sides[::-1]:
                s = stall_check(bench, c, user, mode, duration)
                out["stall"].setdefault(mode, {})[name] = s
                log(f"  auth {mode:<6} stall  {name:<9} alone: {summary(s['alone'])}; with 100 authenticating: "
                    f"{summary(s['with_storm'])}; authenticate: {summary(s['storm'])}")
            row += 1
        for _name, c in sides:
            c.stop()
        shutil.rmtree(base, ignore_errors=True)
    return out


def run_gateway(bench, opts, workdir, live):
    """JSON put, then range, over HTTP against one fresh member of each server, alternating which goes first."""
    duration = plan.MODES[opts.mode]["duration"] * 3
    etcd = servers.Cluster("etcd", opts.etcd, os.path.join(workdir, "gateway"), 1, bench.binary)
    ms = servers.Cluster("metastore", opts.metastore, os.path.join(workdir, "gateway"), 1, bench.binary)
    live += [etcd, ms]
    etcd.start()
    ms.start()
    for c in (etcd, ms):
        gateway.preload(c.endpoints)
    results = {}
    for i, wid in enumerate(("gateway-put", "gateway-range")):
        order = [("etcd", etcd), ("metastore", ms)]
        if i % 2:
            order.reverse()
        for name, c in order:
            r = gateway.run(c.endpoints, wid.split("-")[1], duration)
            results.setdefault(wid, {})[name] = r
            log(f"  {wid:<14} {name:<9} {summary(r)}")
            time.sleep(1)
    etcd.stop()
    ms.stop()
    return {"workloads": results, "duration": duration, "clients": gateway.CLIENTS}


def scan_summary(r):
    if "harness_error" in r:
        return "ERROR " + r["harness_error"]
    e = r.get("extra", {})
    base = e.get("baseline", {}).get("latency_ms", {}).get("p99", 0)
    return (f"load {e.get('load_s', 0):.0f}s; put p99 {base:.2f} ms without scan, "
            f"{r.get('latency_ms', {}).get('p99', 0):.2f} ms with; {e.get('scans_completed')} scans "
            f"(p50 {e.get('scan_latency_ms', {}).get('p50', 0):.0f} ms); "
            f"term changed: {e.get('term_changed_during_scan')}")


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bench", required=True, help="metastore-bench binary")
    p.add_argument("--metastore", required=True, help="metastore server binary")
    p.add_argument("--etcd", default="/usr/bin/etcd")
    p.add_argument("--etcdctl", help="etcdctl that sets up the auth section's users (default: beside --etcd)")
    p.add_argument("--quick", action="store_true", help="about 5 minutes instead of about 25")
    p.add_argument("--out", help="markdown file to write (e.g. docs/benchmarks.md)")
    p.add_argument("--json-out", help="also write every raw report to this JSON file")
    p.add_argument("--workdir", default=os.path.expanduser("~/.cache/metastore/bench"),
                   help="parent of the run's data dirs (must be a real disk, not tmpfs)")
    p.add_argument("--only", help="comma-separated workload ids (debugging)")
    p.add_argument("--skip", default="", help="comma-separated sections to skip: floor,single,cluster,scale,scan,auth,gateway,defrag")
    p.add_argument("--sections", help="comma-separated sections to run (default: all); with --out, only "
                   "their parts of an existing document are replaced")
    p.add_argument("--scale-keys", type=int, help="keys the scale section loads (default: 1,000,000 in full "
                   "mode, 100,000 in quick); the section is then reported as its own scale run")
    p.add_argument("--keep", action="store_true", help="keep the data dirs and server logs")
    p.add_argument("--render-from", metavar="JSON", help="only re-render a --json-out file of an earlier run")
    if "--render-from" in sys.argv:  # no binaries needed
        for a in p._actions:
            a.required = False
    o = p.parse_args()
    o.mode = "quick" if o.quick else "full"
    o.only = set(o.only.split(",")) if o.only else None
    o.skip = set(filter(None, o.skip.split(",")))
    if o.sections:
        o.skip |= set(SECTIONS) - set(o.sections.split(","))
    o.etcdctl = o.etcdctl or os.path.join(os.path.dirname(o.etcd or "/usr/bin/etcd"), "etcdctl")
    for b in () if o.render_from else (o.bench, o.metastore, o.etcd) + ((o.etcdctl,) if "auth" not in o.skip else ()):
        if not os.access(b, os.X_OK):
            p.error(f"not executable: {b}")
    return o


SECTIONS = ("floor", "single", "cluster", "scale", "scan", "auth", "gateway", "defrag")


def write(text, opts, res=None):
    print(text)
    partial = res is not None and bool(getattr(opts, "sections", None))
    if opts.out and partial and os.path.exists(opts.out):
        with open(opts.out) as f:
            old = f.read()
        for name in SECTIONS:
            if name in res:
                # A scale run with its own key count (make bench-scale) has a section of its own.
                where = "scale-run" if name == "scale" and res["scale"].get("custom") else name
                old = doc.splice(old, where, doc.section_text(res, name, partial=True))
        with open(opts.out, "w") as f:
            f.write(old)
        log(f"updated the {', '.join(n for n in SECTIONS if n in res)} section(s) of {opts.out}")
    elif opts.out:
        if os.path.exists(opts.out):
            with open(opts.out) as f:
                text = doc.keep_hand_written(f.read(), text)
        with open(opts.out, "w") as f:
            f.write(text)
        log(f"wrote {opts.out}")


def main():
    opts = parse_args()
    if opts.render_from:
        with open(opts.render_from) as f:
            res = json.load(f)
        opts.mode = res["mode"]
        return write(doc.render(res, opts), opts, res)
    os.makedirs(opts.workdir, exist_ok=True)
    workdir = tempfile.mkdtemp(prefix="run-", dir=opts.workdir)
    fs = subprocess.run(["stat", "-f", "-c", "%T", workdir], capture_output=True, text=True).stdout.strip()
    if fs in ("tmpfs", "ramfs"):
        sys.exit(f"{workdir} is on {fs}: fsync would cost nothing there; use --workdir on a disk")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    # Snapshot the binaries: a rebuild in the shared target dir during the run must not mix builds.
    bindir = os.path.join(workdir, "bin")
    os.makedirs(bindir)
    fingerprints = {}
    for attr in ("metastore", "bench"):
        src = getattr(opts, attr)
        dst = os.path.join(bindir, os.path.basename(src))
        shutil.copy2(src, dst)
        fingerprints[os.path.basename(src)] = doc.fingerprint(dst)
        setattr(opts, attr, dst)
    bench = Bench(opts.bench, plan.MODES[opts.mode]["duration"])
    started = time.monotonic()
    res = {"mode": opts.mode, "machine": {**doc.describe_machine(workdir, opts), "binaries": fingerprints},
           "argv": sys.argv,
           "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
    live = []
    sections = [
        ("floor", "floor: fdatasync and loopback",
         lambda: bench.run("http://127.0.0.1:1", ["floor", "--dir", workdir], "floor")),
        ("single", "single member: etcd and MetaStore side by side", lambda: run_single(bench, opts, workdir, live)),
        ("cluster", "three members", lambda: run_cluster(bench, opts, workdir, live)),
        ("scale", "scale run", lambda: run_scale(bench, opts, workdir, live)),
        ("scan", "reads under writes: put-under-scan", lambda: run_scan(bench, opts, workdir, live)),
        ("auth", "auth: put and range with auth off, simple tokens, JWTs; Authenticate storm",
         lambda: run_auth(bench, opts, workdir, live)),
        ("gateway", "JSON gateway: put and range over HTTP", lambda: run_gateway(bench, opts, workdir, live)),
        ("defrag", "defragment under writes: put-under-defrag", lambda: run_defrag(bench, opts, workdir, live)),
    ]
    try:
        for name, title, run in sections:
            if name in opts.skip:
                continue
            log(title)
            try:
                res[name] = run()
            except (RuntimeError, OSError, subprocess.SubprocessError, ValueError) as e:
                log(f"  {name} failed: {e}")
                res.setdefault("section_errors", {})[name] = str(e)
            finally:
                for c in live:
                    c.stop()
                live.clear()
    finally:
        for c in live:
            c.stop()
        if not opts.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    res["elapsed_s"] = time.monotonic() - started
    res["machine"]["after"] = doc.load_now()
    res["commands"] = bench.commands
    if opts.json_out:
        with open(opts.json_out, "w") as f:
            json.dump(res, f, indent=1, default=str)
    write(doc.render(res, opts), opts, res)


if __name__ == "__main__":
    main()

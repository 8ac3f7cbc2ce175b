"""The machine description and the markdown document written to docs/benchmarks.md."""

import hashlib
import os
import platform
import shlex
import subprocess
import time

from harness import gateway, plan, stages
from harness.render import fmt_num, mib, ratio, table, workload_rows


def sh(*argv):
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def cpu_busy_pct(seconds=2.0):
    """Share of all CPUs busy over `seconds` (everything on the machine, not just ours)."""
    def sample():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        idle = v[3] + v[4]
        return sum(v), idle
    t1, i1 = sample()
    time.sleep(seconds)
    t2, i2 = sample()
    return 100.0 * (1 - (i2 - i1) / max(1, t2 - t1))


def load_now():
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    return {"loadavg": load, "cpu_busy_pct": round(cpu_busy_pct(1.0), 1)}


def fingerprint(path):
    """`sha256:<12 hex>, built <mtime>` of a binary."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    built = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(os.stat(path).st_mtime))
    return f"sha256:{h.hexdigest()[:12]}, built {built}"


def describe_machine(workdir, opts):
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    mem_kib = next(int(line.split()[1]) for line in open("/proc/meminfo") if line.startswith("MemTotal"))
    os_name = next((line.split("=", 1)[1].strip().strip('"') for line in open("/etc/os-release")
                    if line.startswith("PRETTY_NAME")), platform.system())
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    commit = sh("git", "-C", repo, "rev-parse", "--short", "HEAD")
    dirty = sh("git", "-C", repo, "status", "--porcelain", "--untracked-files=no")
    df = sh("df", "--output=source,fstype", workdir).splitlines()
    return {
        "cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(), "os": os_name,
        "virtualization": sh("systemd-detect-virt") or sh("sh", "-c", "lscpu | sed -n 's/^Hypervisor vendor: *//p'"),
        "data_fs": " ".join(df[-1].split()) if df else "?",
        "etcd": sh(opts.etcd, "--version").splitlines()[0] if sh(opts.etcd, "--version") else "?",
        "metastore_commit": commit + (" (with uncommitted changes)" if dirty else ""),
        "rustc": sh("rustc", "--version"),
        "before": load_now(),
    }


def machine_section(m):
    b, a = m["before"], m.get("after", {})
    return "\n".join([
        f"- CPU: {m['cpu']}, {m['cores']} cores; memory {m['memory_gib']} GiB; virtualization: {m['virtualization']}",
        f"- OS: {m['os']}, kernel {m['kernel']}",
        f"- data dirs on: {m['data_fs']} (every server fsyncs: etcd its WAL, MetaStore its raft WAL)",
        f"- {m['etcd']} (Debian `etcd-server`, /usr/bin/etcd); MetaStore commit {m['metastore_commit']}, "
        f"built with {m['rustc']} (`--release`); binaries used (copied at the start of the run): "
        + "; ".join(f"`{n}` {fp}" for n, fp in m.get("binaries", {}).items()),
        f"- machine load: before the run {b['cpu_busy_pct']}% CPU busy (load average {b['loadavg']}); "
        f"after: {a.get('cpu_busy_pct', '?')}% (load average {a.get('loadavg', '?')}). "
        "The load generator shares the 2 cores with the servers.",
    ] + ([f"- **Warning**: the machine was already {b['cpu_busy_pct']}% busy with other work when the run began; "
          "figures are noisier than on an idle machine."] if b["cpu_busy_pct"] > 20 else []))


def floor_section(f):
    if not f or "harness_error" in f:
        return f"not measured: {f and f.get('harness_error')}"
    e = f["extra"]
    rows = [
        ("4 KiB overwrite + fdatasync (preallocated file)", f["latency_ms"]["p50"], f["latency_ms"]["p99"]),
        ("4 KiB append + fdatasync (growing file)", e["append_fdatasync_ms"]["p50"], e["append_fdatasync_ms"]["p99"]),
        ("loopback TCP round trip, 64 B", e["loopback_rtt_ms"]["p50"], e["loopback_rtt_ms"]["p99"]),
    ]
    return table([(n, fmt_num(p50, "ms"), fmt_num(p99, "ms")) for n, p50, p99 in rows], ("what", "p50 ms", "p99 ms"))


def single_section(s):
    rows = []
    for wid, title, _g, _s, kind, _f in s["plan"]:
        r = s["workloads"].get(wid, {})
        rows += workload_rows(title, kind, r.get("etcd"), r.get("metastore"))
    res = s["resources"]
    e, m = res["etcd"], res["metastore"]
    rrows = [
        ("peak RSS (MiB)", mib(e["peak_rss_kib"]), mib(m["peak_rss_kib"])),
        ("data dir, allocated (MiB)", mib(e["data_alloc"], True), mib(m["data_alloc"], True)),
        ("data dir, apparent size (MiB)", mib(e["data_apparent"], True), mib(m["data_apparent"], True)),
    ]
    rtable = table([(n, fmt_num(a, "MiB"), fmt_num(b, "MiB"), ratio(a, b)) for n, a, b in rrows],
                   ("after the single-member runs", "etcd", "MetaStore", "MetaStore / etcd"))
    return table(rows) + "\n\n" + rtable + split_text(s)


def split_text(section):
    """The stage split of the section's 1-client put row (harness/stages.py), if it was measured."""
    parts = []
    for wid in sorted(stages.ROWS):
        r = section["workloads"].get(wid, {})
        t = stages.section(dig(r, "etcd", "stages"), dig(r, "metastore", "stages"))
        if t:
            parts.append(t)
    if not parts:
        return ""
    return ("\n\nWhere the time of one put goes, from each server's own metrics (`--metrics extensive`; "
            "differences of the histograms' sums and counts over the 1-client put row, the member that "
            "served the puts; see `tools/bench/harness/stages.py` for what each line measures):\n\n"
            + "\n\n".join(parts))


def cluster_section(c):
    note = c.get("metastore_note")
    skipped = {"skipped_reason": "skipped: did not start"} if note else None
    rows = []
    for wid, title, glob, _s, kind in c["plan"]:
        target = " (to the leader)" if "--target-leader" in glob else ""
        r = c["workloads"].get(wid, {})
        rows += workload_rows(title + target, kind, r.get("etcd"), skipped or r.get("metastore"))
    peaks = c.get("peak_rss_kib", {})
    text = ("Writes marked \"to the leader\" use `--target-leader`; everything else spreads its connections over "
            "the three members. Peak RSS of the largest member: " +
            ", ".join(f"{n} {fmt_num(mib(v), 'MiB')} MiB" for n, v in peaks.items()) + ".")
    if note:
        text = (f"MetaStore could not be measured with three members: started as a 3-member cluster on loopback, it "
                f"did not serve within 30 s ({note}). Its column says so; etcd's figures are real.\n\n" + text)
    return text + "\n\n" + table(rows) + split_text(c)


def scale_section(s):
    keys = s["keys"]
    e, m = s.get("etcd", {}), s.get("metastore", {})

    def load_rate(x):
        ld = x.get("load", {})
        return 100 * ld.get("throughput", 0) if ld.get("ok") else None

    def read(x, rid, q):
        r = x.get("reads", {}).get(rid, {})
        return r.get("latency_ms", {}).get(q) if r.get("ok") else None

    rows = [
        ("keys loaded", "n", e.get("loaded_keys"), m.get("loaded_keys")),
        ("load rate (keys/s, txns of 100 puts, 16 clients)", "n", load_rate(e), load_rate(m)),
        ("RSS after load (MiB)", "MiB", mib(e.get("rss_loaded_kib")), mib(m.get("rss_loaded_kib"))),
        ("peak RSS (MiB)", "MiB", mib(e.get("peak_rss_kib")), mib(m.get("peak_rss_kib"))),
        ("data dir, allocated (MiB)", "MiB", mib(e.get("data_alloc"), True), mib(m.get("data_alloc"), True)),
        ("data dir, apparent size (MiB)", "MiB", mib(e.get("data_apparent"), True), mib(m.get("data_apparent"), True)),
        ("restart: SIGTERM, start, first linearizable read (s)", "s", e.get("restart_s"), m.get("restart_s")),
        ("RSS right after restart (MiB)", "MiB", mib(e.get("rss_restarted_kib")), mib(m.get("rss_restarted_kib"))),
    ]
    for kind, title in (("block_cache", "RocksDB block cache"), ("memtables", "RocksDB memtables"),
                        ("table_readers", "RocksDB index/filter blocks outside the cache")):
        for when, key in (("after load", "storage_memory"), ("after restart", "storage_memory_restarted")):
            b = m.get(key, {}).get(kind)
            if b is not None:
                rows.append((f"MetaStore only: {title}, {when} (MiB)", "MiB", None, b / 1048576))
    for rid, title, _a in plan.scale_reads(keys):
        for q in ("p50", "p99"):
            rows.append((f"{title}: {q} ms", "ms", read(e, rid, q), read(m, rid, q)))
    out = table([(n, fmt_num(a, u), fmt_num(b, u), ratio(a, b)) for n, u, a, b in rows],
                (f"{keys:,} keys, 16 B keys, 256 B values", "etcd", "MetaStore", "MetaStore / etcd"))
    for name, x in (("etcd", e), ("MetaStore", m)):
        errs = x.get("load", {}).get("errors") or x.get("load", {}).get("harness_error")
        if errs:
            out += f"\n\n{name} load errors: {errs}"
    return out


def scan_section(s):
    """Reads under writes: one table per cluster size, etcd and MetaStore side by side."""
    keys, duration = s["keys"], s["duration"]
    text = [
        f"A fresh server of each kind is loaded with {keys:,} keys (`s/<14 digits>`, 256 B values, "
        "transactions of 100 puts); then `metastore-bench put-under-scan` times puts (16 B keys under `w/`, "
        f"256 B values, {plan.SCAN_CLIENTS[1]} clients on {plan.SCAN_CLIENTS[0]} connections) for {duration} s with "
        f"nothing else running, then for {duration} s while one more client loops a linearizable Range over the "
        "whole keyspace (key `\\0`, range_end `\\0`, no limit, values included: `etcdctl get --prefix \"\"`; "
        "the client accepts responses up to 2 GiB). A scan still running when the puts stop is not counted. "
        "The raft term is read with Maintenance.Status from every member before and after each phase: a "
        "different term or leader afterwards means an election happened. With 3 members the puts and the "
        "scans go to the leader. The scanning client decodes every response (about 300 MB for 1,000,000 keys) "
        "on the same 2 cores as the servers, so part of the slowdown with scan is client CPU, for both servers "
        "alike; the no-scan phase runs right before, on the same loaded data, as the reference.",
    ]
    for wid, runs in s["runs"].items():
        size = int(wid.split("-")[1].rstrip("m"))
        rows = scan_rows(runs.get("etcd"), runs.get("metastore"))
        text += ["", f"### {'One member' if size == 1 else f'{size} members'}", "",
                 table(rows, ("", "etcd", "MetaStore", "MetaStore / etcd"))]
    return "\n".join(text)


def dig(r, *path):
    """r[path[0]][path[1]]…, or None where a step is missing."""
    for p in path:
        if not isinstance(r, dict):
            return None
        r = r.get(p)
    return r


def side_by_side(etcd, ms, specs, note=lambda label, r: ""):
    """Table rows (label, etcd cell, MetaStore cell, ratio) from specs (label, how, f, unit): `how` None
    formats f(r) in `unit` (`x`: a ratio), "pair" two figures, "text" f(r) as is; `note(label, r)` is
    appended to a plain cell. A "keys loaded" row adds the load time and gets no ratio."""
    rows = []
    for label, how, f, unit in specs:
        cells, values = [], []
        for r in (etcd, ms):
            if r is None or "harness_error" in r:
                cells.append("-" if rows else (f"error: {r['harness_error']}" if r else "not run"))
                values.append(None)
                continue
            v = f(r)
            if how == "text":
                cells.append(v or "-")
                values.append(None)
            elif how == "pair":
                cells.append(" / ".join(fmt_num(x, unit) for x in v))
                values.append(None)
            elif unit == "x":
                cells.append(f"{v:.2f}×" if v is not None else "-")
                values.append(v)
            else:
                text = fmt_num(v, unit)
                if label.startswith("keys loaded"):
                    text += f" ({fmt_num(dig(r, 'extra', 'load_s'), 's')})"
                    v = None  # no ratio: both load the same keys
                cells.append(text + note(label, r))
                values.append(v)
        rows.append((label, cells[0], cells[1], ratio(values[0], values[1])))
    return rows


def scan_rows(etcd, ms):
    get = dig

    def term(r):
        if not r or "harness_error" in r:
            return None
        e = r.get("extra", {})
        changed = e.get("term_changed_during_scan")
        b, a = e.get("term_after_baseline") or e.get("term_before") or {}, e.get("term_after_scan") or {}
        word = {True: "**yes**", False: "no", None: "unknown"}[changed]
        return f"{word} (term {b.get('raft_term')} → {a.get('raft_term')})"

    def base_term(r):
        if not r or "harness_error" in r:
            return None
        e = r.get("extra", {})
        word = {True: "**yes**", False: "no", None: "unknown"}[e.get("term_changed_during_baseline")]
        return word

    specs = [
        ("keys loaded (load time, s)", None, lambda r: get(r, "extra", "loaded_keys"), "n"),
        ("put p50 ms, no scan", None, lambda r: get(r, "extra", "baseline", "latency_ms", "p50"), "ms"),
        ("**put p99 ms, no scan**", None, lambda r: get(r, "extra", "baseline", "latency_ms", "p99"), "ms"),
        ("put p50 ms, with scan", None, lambda r: get(r, "latency_ms", "p50"), "ms"),
        ("**put p99 ms, with scan**", None, lambda r: get(r, "latency_ms", "p99"), "ms"),
        ("put max ms, no scan / with scan", "pair", lambda r: (get(r, "extra", "baseline", "latency_ms", "max"),
                                                              get(r, "latency_ms", "max")), "ms"),
        ("puts over 100 ms / over 1 s, no scan", "pair", lambda r: (get(r, "extra", "baseline", "over_100ms"),
                                                                   get(r, "extra", "baseline", "over_1s")), "n"),
        ("puts over 100 ms / over 1 s, with scan", "pair", lambda r: (get(r, "extra", "puts_over_100ms"),
                                                                     get(r, "extra", "puts_over_1s")), "n"),
        ("**put p99 with scan / without**", None, lambda r: get(r, "extra", "p99_ratio"), "x"),
        ("puts/s, no scan / with scan", "pair", lambda r: (get(r, "extra", "baseline", "throughput"),
                                                           get(r, "throughput")), "n"),
        ("**full scans completed**", None, lambda r: get(r, "extra", "scans_completed"), "n"),
        ("keys per scan", None, lambda r: get(r, "extra", "keys_per_scan"), "n"),
        ("scan latency p50 / max, ms", "pair", lambda r: (get(r, "extra", "scan_latency_ms", "p50"),
                                                           get(r, "extra", "scan_latency_ms", "max")), "ms"),
        ("**election during the scans**", "text", term, None),
        ("election during the no-scan phase", "text", base_term, None),
        ("peak RSS (MiB)", None, lambda r: mib(get(r, "peak_rss_kib")), "MiB"),
    ]

    def note(label, r):
        if label.startswith("**full scans") and get(r, "extra", "scans_failed"):
            return f" ({get(r, 'extra', 'scans_failed')} failed)"
        if label.startswith("put p50 ms, with") and r.get("errors"):
            return " (" + ", ".join(f"{c}×{n}" for c, n in sorted(r["errors"].items())) + ")"
        return ""

    return side_by_side(etcd, ms, specs, note)


def defrag_section(d):
    """Defragment under writes: etcd and MetaStore side by side."""
    text = [
        f"A fresh single member of each kind is loaded with {d['keys']:,} keys (`d/<14 digits>`, 256 B values, "
        "transactions of 100 puts); then `metastore-bench put-under-defrag` runs puts (16 B keys under `w/` over "
        f"100,000 keys, 256 B values, {plan.DEFRAG_CLIENTS[1]} clients on {plan.DEFRAG_CLIENTS[0]} connections) for "
        f"{d['duration']} s with nothing else running, then for another {d['duration']} s with one "
        "Maintenance.Defragment sent 2 s in (`etcdctl defrag`). \"during\" counts the puts that overlapped the "
        "defragment call (started before it answered and answered after it was sent). Latencies include failed "
        "puts at their time to fail (etcd answers a put it held past its request timeout, 7 s, with `request "
        "timed out`). etcd blocks reads and writes while it rewrites its bbolt file, MetaStore compacts RocksDB "
        "beside them.",
        "",
        table(defrag_rows(d["runs"].get("etcd"), d["runs"].get("metastore")), ("", "etcd", "MetaStore", "MetaStore / etcd")),
    ]
    return "\n".join(text)


def defrag_rows(etcd, ms):
    get = dig
    specs = [
        ("keys loaded (load time, s)", None, lambda r: get(r, "extra", "loaded_keys"), "n"),
        ("defragment took, ms", None, lambda r: get(r, "extra", "defrag_ms"), "ms"),
        ("put p50 ms, before", None, lambda r: get(r, "extra", "baseline", "latency_ms", "p50"), "ms"),
        ("**put p99 ms, before**", None, lambda r: get(r, "extra", "baseline", "latency_ms", "p99"), "ms"),
        ("put max ms, before", None, lambda r: get(r, "extra", "baseline", "latency_ms", "max"), "ms"),
        ("puts during the defragment", None, lambda r: get(r, "extra", "during_defrag", "ok"), "n"),
        ("put p50 ms, during", None, lambda r: get(r, "extra", "during_defrag", "latency_ms", "p50"), "ms"),
        ("**put p99 ms, during**", None, lambda r: get(r, "extra", "during_defrag", "latency_ms", "p99"), "ms"),
        ("**put max ms, during**", None, lambda r: get(r, "extra", "during_defrag", "latency_ms", "max"), "ms"),
        ("puts over 100 ms / over 1 s, during", "pair", lambda r: (get(r, "extra", "during_defrag", "over_100ms"),
                                                                  get(r, "extra", "during_defrag", "over_1s")), "n"),
        ("**put p99 during / before**", None, lambda r: get(r, "extra", "p99_ratio"), "x"),
        ("failed puts before / during", "pair", lambda r: (get(r, "extra", "baseline", "failed"),
                                                          get(r, "extra", "during_defrag", "failed")), "n"),
        ("peak RSS (MiB)", None, lambda r: mib(get(r, "peak_rss_kib")), "MiB"),
    ]

    def note(label, r):
        err = get(r, "extra", "defrag_error")
        return f" (error: {err})" if label.startswith("defragment took") and err else ""

    return side_by_side(etcd, ms, specs, note)


def auth_section(a):
    """Throughput per auth configuration, what auth costs each server, and the login-storm check."""
    modes = [tuple(m) for m in a["modes"]]
    user, prefix = plan.AUTH_USER[0], plan.AUTH_PREFIX
    text = [
        f"A fresh single member of each kind per configuration, both running side by side, {a['duration']} s per "
        "run, the order alternating from row to row. With auth on, etcdctl first creates `root` (role `root`) and "
        f"`{user}`, a non-root user whose one role has a `readwrite` grant on the prefix `{prefix}`, then "
        f"enables auth; every workload connects as `{user}` (`metastore-bench --user`: one Authenticate per "
        "connection, the token sent with every request) and uses keys under that prefix. Simple tokens are "
        "etcd's default; JWTs use `--auth-token jwt,pub-key=…,priv-key=…,sign-method=RS256` with a 2048-bit key "
        "pair made with openssl for the run. Passwords are hashed at both servers' default bcrypt cost, 10.",
        "",
        table(auth_rows(a, modes)),
        "",
        "What auth costs each server (throughput with auth on / with auth off; below 1 is a cost):",
        "",
        table(auth_cost_rows(a, modes), ("workload", "tokens", "etcd", "MetaStore")),
    ]
    if a.get("stall"):
        text += [
            "",
            "### Does a login storm stall other clients?",
            "",
            f"One client puts (16 B keys under `{prefix}s/`, 256 B values) for {a['duration']} s alone, then again "
            f"while {plan.AUTH_STORM_CLIENTS} more clients (on 10 connections) call Authenticate as `{user}` in a "
            f"loop, started {plan.AUTH_STORM_LEAD} s before the timed puts and outlasting them (the put client's own "
            "Authenticate, when it connects, queues behind the storm's; its connection time is not in the "
            "latencies). Every Authenticate is a bcrypt check of the password (cost 10) plus the issue of a token "
            "through raft, on both servers.",
        ]
        for mode, title in modes:
            if mode in a["stall"]:
                text += ["", f"**{title}**", "", table(stall_rows(a["stall"][mode]),
                                                          ("", "etcd", "MetaStore", "MetaStore / etcd"))]
    return "\n".join(text)


def auth_rows(a, modes):
    rows = []
    for wid, wtitle, _g, _s in plan.AUTH_WORKLOADS:
        for mode, title in modes:
            r = a["runs"].get(f"{wid}-{mode}", {})
            rows += workload_rows(f"{wtitle}, {title}", "req", r.get("etcd"), r.get("metastore"))
    return rows


def auth_cost_rows(a, modes):
    def rate(wid, mode, server):
        r = a["runs"].get(f"{wid}-{mode}", {}).get(server)
        return r.get("throughput") if r and "harness_error" not in r and r.get("ok") else None

    rows = []
    for wid, wtitle, _g, _s in plan.AUTH_WORKLOADS:
        for mode, title in modes[1:]:
            cells = []
            for server in ("etcd", "metastore"):
                on, off = rate(wid, mode, server), rate(wid, modes[0][0], server)
                cells.append(f"{on / off:.2f}" if on is not None and off else "-")
            rows.append((wtitle, title.split(", ", 1)[-1], *cells))
    return rows


def stall_rows(sides):
    """Rows of the stall check; a part's first row also names its failures (or why it has no figure)."""
    def get(r, *path):
        for p in path:
            if not isinstance(r, dict) or "harness_error" in r:
                return None
            r = r.get(p)
        return r

    def p99_ratio(s):
        alone, storm = get(s, "alone", "latency_ms", "p99"), get(s, "with_storm", "latency_ms", "p99")
        return storm / alone if alone and storm is not None else None

    # (label, unit, part of the stall result, value, first row of that part)
    specs = [
        ("put alone: req/s", "n", "alone", lambda s: get(s, "alone", "throughput"), True),
        ("put alone: p50 ms", "ms", "alone", lambda s: get(s, "alone", "latency_ms", "p50"), False),
        ("**put alone: p99 ms**", "ms", "alone", lambda s: get(s, "alone", "latency_ms", "p99"), False),
        ("put during the storm: req/s", "n", "with_storm", lambda s: get(s, "with_storm", "throughput"), True),
        ("puts completed during the storm", "n", "with_storm", lambda s: get(s, "with_storm", "ok"), False),
        ("put during the storm: p50 ms", "ms", "with_storm", lambda s: get(s, "with_storm", "latency_ms", "p50"), False),
        ("**put during the storm: p99 ms**", "ms", "with_storm", lambda s: get(s, "with_storm", "latency_ms", "p99"),
         False),
        ("put during the storm: max ms", "ms", "with_storm", lambda s: get(s, "with_storm", "latency_ms", "max"), False),
        ("**put p99 during the storm / alone**", "x", "with_storm", p99_ratio, False),
        (f"Authenticate calls/s ({plan.AUTH_STORM_CLIENTS} clients)", "n", "storm",
         lambda s: get(s, "storm", "throughput"), True),
        ("Authenticate p50 ms", "ms", "storm", lambda s: get(s, "storm", "latency_ms", "p50"), False),
        ("Authenticate p99 ms", "ms", "storm", lambda s: get(s, "storm", "latency_ms", "p99"), False),
    ]
    rows = []
    for label, unit, part, f, first in specs:
        cells, values = [], []
        for server in ("etcd", "metastore"):
            s = sides.get(server) or {}
            v = f(s) if s else None
            report = s.get(part) or {}
            if v is None:
                text = f"error: {report['harness_error']}" if first and "harness_error" in report else "-"
            else:
                text = f"{v:.2f}×" if unit == "x" else fmt_num(v, unit)
                if first and report.get("errors"):
                    text += " (" + ", ".join(f"{c}×{n}" for c, n in sorted(report["errors"].items())) + ")"
                if first and part == "storm" and not s.get("storm_covered_puts"):
                    text += " (ended before the puts did)"
            cells.append(text)
            values.append(v)
        rows.append((label, cells[0], cells[1], ratio(values[0], values[1])))
    return rows


# Each section's heading (the text a partial run's splice looks for) and its intro.
SECTION_HEADINGS = {
    "floor": "## Physical floor",
    "single": "## Single member",
    "cluster": "## Three members",
    "scale": "## Scale:",
    "scale-run": "## Scale run:",
    "scan": "## Reads under writes: put latency during full-keyspace scans",
    "auth": "## Auth: simple tokens and JWTs against no auth",
    "gateway": "## JSON gateway: put and range over HTTP",
    "defrag": "## Defragment under writes",
}


def section_text(res, name, partial=False):
    """The markdown of one section, heading included. A partial run (`--sections`) says when and how it
    was produced, since the rest of the document comes from another run."""
    head = SECTION_HEADINGS[name]
    if name == "scale" and res["scale"].get("custom"):
        return section_text({**res, "scale-run": res["scale"]}, "scale-run", partial)
    if name == "floor":
        body = floor_section(res["floor"])
    elif name == "single":
        body = ("Both servers run at once, each with a fresh data dir; each workload runs against one and then "
                "the other, the order alternating from row to row.\n\n" + single_section(res["single"]))
    elif name == "cluster":
        body = cluster_section(res["cluster"])
    elif name in ("scale", "scale-run"):
        head = f"{head} {res[name]['keys']:,} keys"
        if name == "scale-run":
            head += " (`make bench-scale`)"
        body = ("A fresh single member of each server, loaded with sequential keys `s/<14 digits>` in "
                "transactions of 100 puts; then a graceful restart timed until the first linearizable read "
                "succeeds, then reads with 1 client. Both get `--quota-backend-bytes 8589934592`.\n\n"
                + scale_section(res[name]))
    elif name == "scan":
        body = scan_section(res["scan"])
    elif name == "defrag":
        body = defrag_section(res["defrag"])
    elif name == "gateway":
        body = gateway.section(res["gateway"])
    else:
        body = auth_section(res["auth"])
    if name in ("scan", "auth", "gateway", "defrag") or partial:
        make = "make bench BENCH_QUICK=1" if res["mode"] == "quick" else "make bench"
        argv = "python3 " + shlex.join(res.get("argv", ["tools/bench/compare.py"]))
        how = f"{res['mode'].capitalize()} mode, {res['date']}"
        if partial:
            m = res["machine"]
            how += (f", this section only (`{argv}`); machine load before it {m['before']['cpu_busy_pct']}% CPU busy "
                    f"(load average {m['before']['loadavg']}), MetaStore commit {m['metastore_commit']}. The rest "
                    "of this document comes from the run described at the top.")
        else:
            how += f", part of `{make}`."
        cmds = list(dict.fromkeys(" ".join(shlex.quote(a) if a != "$EP" else a for a in argv_)
                                  for wid, argv_ in res.get("commands", []) if wid.startswith(name)))
        body = (how + (" Command per server (`$EP` = its client URL(s)):\n\n```\n" + "\n".join(cmds) + "\n```"
                       if cmds else "") + "\n\n" + body)
    return head + "\n\n" + body


READING = "### Reading"


def splice(document, name, text):
    """Replaces section `name` of a rendered document (from its heading to the next `## `) with `text`;
    adds it before `## Failures` (or at the end) when the document has no such section. A hand-written
    `### Reading` at the end of the old section is kept after the new text (reread it against the new
    figures)."""
    head = SECTION_HEADINGS[name]
    lines = document.split("\n")
    start = next((i for i, line in enumerate(lines) if line.startswith(head)), None)
    if start is None:
        at = next((i for i, line in enumerate(lines) if line.startswith("## Failures")), len(lines))
        return "\n".join(lines[:at] + text.split("\n") + [""] + lines[at:])
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    reading = next((i for i in range(start + 1, end) if lines[i].startswith(READING)), end)
    kept = lines[reading:end]
    while kept and kept[-1] == "":
        kept.pop()
    kept = [""] + kept if kept else []
    return "\n".join(lines[:start] + text.split("\n") + kept + [""] + lines[end:])


def _section_bounds(lines, head):
    start = next((i for i, line in enumerate(lines) if line.startswith(head)), None)
    if start is None:
        return None
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    return start, end


def keep_hand_written(old, new):
    """A full run's document `new`, with what only the old document has: each section's hand-written
    `### Reading` (kept after the new figures; reread it against them) and whole sections this run did
    not produce (the `make bench-scale` one), before `## Failures`."""
    new_lines = new.split("\n")
    old_lines = old.split("\n")
    for name, head in SECTION_HEADINGS.items():
        was = _section_bounds(old_lines, head)
        if was is None:
            continue
        now = _section_bounds(new_lines, head)
        if now is None:
            if name == "scale-run":
                at = next((i for i, line in enumerate(new_lines) if line.startswith("## Failures")), len(new_lines))
                new_lines[at:at] = old_lines[was[0]:was[1]]
            continue
        reading = next((i for i in range(was[0] + 1, was[1]) if old_lines[i].startswith(READING)), was[1])
        kept = old_lines[reading:was[1]]
        while kept and kept[-1] == "":
            kept.pop()
        if kept:
            end = now[1]
            while end > now[0] and new_lines[end - 1] == "":
                end -= 1
            new_lines[end:end] = [""] + kept
    return "\n".join(new_lines)


def failure_list(res):
    """Bullets: every failure code seen, with the server's first message for it."""
    found = []

    def add(section, wid, server, r):
        if not r:
            return
        if "harness_error" in r:
            found.append(f"- {section} / {wid} / {server}: harness error: {r['harness_error']}")
        for code, n in sorted(r.get("errors", {}).items()):
            msg = r.get("error_messages", {}).get(code, "").replace("\n", " ")[:200]
            found.append(f"- {section} / {wid} / {server}: `{code}` ×{n}: {msg}")

    for section in ("single", "cluster", "gateway"):
        for wid, sides in res.get(section, {}).get("workloads", {}).items():
            for server, r in sides.items():
                add(section, wid, server, r)
    for wid, sides in res.get("scan", {}).get("runs", {}).items():
        for server, r in sides.items():
            add("scan", wid, server, r)
            for code, e in sorted(((r or {}).get("extra", {}).get("scan_errors") or {}).items()):
                found.append(f"- scan / {wid} / {server}: scans failed `{code}` ×{e['count']}: {e['message'][:200]}")
    for server, r in res.get("defrag", {}).get("runs", {}).items():
        add("defrag", "put-under-defrag", server, r)
    for wid, sides in res.get("auth", {}).get("runs", {}).items():
        for server, r in sides.items():
            add("auth", wid, server, r)
    for mode, sides in res.get("auth", {}).get("stall", {}).items():
        for server, s in sides.items():
            for part in ("alone", "with_storm", "storm"):
                add("auth", f"{mode}-stall-{part}", server, s.get(part))
    for server in ("etcd", "metastore"):
        x = res.get("scale", {}).get(server, {})
        add("scale", "load", server, x.get("load"))
        for rid, r in x.get("reads", {}).items():
            add("scale", rid, server, r)
    return "\n".join(found) if found else "None."


def commands_section(res, opts):
    lines = ["```"]
    for wid, argv in res.get("commands", []):
        lines.append(f"# {wid}")
        lines.append(" ".join(shlex.quote(a) if a != "$EP" else a for a in argv))
    lines.append("```")
    return "\n".join(lines)


def render(res, opts):
    quick = res["mode"] == "quick"
    make = "make bench BENCH_QUICK=1" if quick else "make bench"
    argv = "python3 " + shlex.join(res.get("argv", ["tools/bench/compare.py"]))
    parts = [
        "# Benchmarks: etcd 3.4.23 and MetaStore side by side",
        "",
        f"{res['mode'].capitalize()} mode ({plan.MODES[res['mode']]['duration']} s per run, "
        f"{res['elapsed_s'] / 60:.1f} min in all), {res['date']}. Reproduce with `{make}`; this run's exact "
        f"command was `{argv}`. The harness is `tools/bench/compare.py`, the load generator "
        "`metastore-bench` (`tools/bench`); see `tools/bench/README.md` to run any workload against any "
        "etcd-compatible endpoint.",
        "",
        "Ratios are MetaStore / etcd of the figure in the row: above 1 is better for a rate and worse for a "
        "latency. Throughput counts successful requests only. `unsupported` means every request failed with "
        "gRPC `Unimplemented`; `*` marks a ratio where one side had failures (it compares successes only).",
        "",
        "## Machine", "", machine_section(res["machine"]), "",
    ]
    for name in SECTION_HEADINGS:
        if name in res:
            parts += [section_text(res, name), ""]
    for name, err in res.get("section_errors", {}).items():
        parts += [f"## {name}: not completed", "", f"The harness stopped this section: {err}", ""]
    parts += ["## Failures", "", failure_list(res), ""]
    parts += [
        "## How it was run", "",
        "Servers: `--name N --data-dir D --listen-client-urls U --advertise-client-urls U --listen-peer-urls P "
        "--initial-advertise-peer-urls P --initial-cluster ... --initial-cluster-state new "
        "--initial-cluster-token bench` for both, on fresh loopback ports; everything else at its default "
        "(etcd: `--snapshot-count 100000`, WAL fsync on; MetaStore: the RocksDB engine, synced raft-log "
        "writes). Each command below ran against etcd (`$EP` = its client URL) and against MetaStore:", "",
        commands_section(res, opts), "",
        "Caveats: the client and the servers share 2 cores, so client CPU is part of every figure, for both "
        "servers alike. The client is Rust (`etcd-client`/tonic), not etcd's Go tool, so absolute figures differ "
        "from etcd's published ones; the ratio is the point.", "",
    ]
    return "\n".join(parts)

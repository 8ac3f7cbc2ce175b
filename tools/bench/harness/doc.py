"""The machine description and the markdown document written to docs/benchmarks.md."""

import hashlib
import os
import platform
import shlex
import subprocess
import time

from harness import plan
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
        f"- data dirs on: {m['data_fs']} (every server fsyncs: etcd its WAL, MetaStore its RocksDB WAL)",
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
    return table(rows) + "\n\n" + rtable


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
    return text + "\n\n" + table(rows)


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

    for section in ("single", "cluster"):
        for wid, sides in res.get(section, {}).get("workloads", {}).items():
            for server, r in sides.items():
                add(section, wid, server, r)
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
    if "floor" in res:
        parts += ["## Physical floor", "", floor_section(res["floor"]), ""]
    if "single" in res:
        parts += ["## Single member", "",
                  "Both servers run at once, each with a fresh data dir; each workload runs against one and then "
                  "the other, the order alternating from row to row.", "", single_section(res["single"]), ""]
    if "cluster" in res:
        parts += ["## Three members", "", cluster_section(res["cluster"]), ""]
    if "scale" in res:
        parts += [f"## Scale: {res['scale']['keys']:,} keys", "",
                  "A fresh single member of each server, loaded with sequential keys `s/<14 digits>` in "
                  "transactions of 100 puts; then a graceful restart timed until the first linearizable read "
                  "succeeds, then reads with 1 client.", "", scale_section(res["scale"]), ""]
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

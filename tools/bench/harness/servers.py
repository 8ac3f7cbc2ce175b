"""Server processes for the comparison: etcd and MetaStore started the same way.

Every server gets fresh loopback ports (bound to port 0 and released just before the start,
all of a cluster's ports chosen together) and a fresh data directory. Both servers get the same
flags (etcd's), nothing that weakens durability: etcd fsyncs its WAL, MetaStore's default
RocksDB engine syncs its raft log. A server is only used after `metastore-bench ready` has
read through it *and* its process is still alive (so a stray server on a reused port is never
measured). Stopping is SIGTERM, then SIGKILL after 15 s, always by the PID we started.
"""

import os
import re
import signal
import socket
import subprocess
import time
import urllib.request

LAUNCHER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "member.sh")


def free_ports(n):
    """n distinct free loopback ports, held open together while chosen."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def dir_size(path):
    """(allocated bytes, apparent bytes) of everything under path."""
    allocated = apparent = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            try:
                st = os.lstat(os.path.join(root, f))
            except FileNotFoundError:
                continue
            allocated += st.st_blocks * 512
            apparent += st.st_size
    return allocated, apparent


def proc_status_kib(pid, field):
    """A `VmRSS`/`VmHWM`-style field of /proc/PID/status in KiB, or None."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def cpu_seconds(pid):
    """User + system CPU seconds process `pid` has used, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def metrics(url):
    """The Prometheus text of `url`/metrics as {(name, ((label, value), ...)): value}, labels sorted;
    empty when it cannot be read."""
    out = {}
    try:
        with urllib.request.urlopen(url + "/metrics", timeout=10) as r:
            text = r.read().decode()
    except OSError:
        return out
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        name, _, labels = head.partition("{")
        pairs = tuple(sorted(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', labels)))
        try:
            out[(name, pairs)] = float(value)
        except ValueError:
            continue
    return out


def storage_memory(endpoint):
    """MetaStore's `metastore_storage_memory_bytes` gauges by kind from /metrics (empty for etcd,
    which has none)."""
    return {dict(labels)["kind"]: int(v) for (name, labels), v in metrics(endpoint.split(",")[0]).items()
            if name == "metastore_storage_memory_bytes"}


class Member:
    """One server process (a single member, or one member of a cluster)."""

    def __init__(self, kind, binary, workdir, name, client_port, peer_port, initial_cluster, flags=()):
        self.kind, self.binary, self.name = kind, binary, name
        self.flags = list(flags)  # more etcd flags, the same for both servers (e.g. --auth-token)
        self.data_dir = os.path.join(workdir, f"{name}.data")
        self.log_path = os.path.join(workdir, f"{name}.log")
        self.client_url = f"http://127.0.0.1:{client_port}"
        self.peer_url = f"http://127.0.0.1:{peer_port}"
        self.initial_cluster = initial_cluster
        self.proc = None
        self.peak_rss_kib = 0

    def argv(self):
        # The one member launcher (tools/member.sh) execs the server, so the PID is the member's.
        return [
            LAUNCHER, self.binary, self.name, self.data_dir, self.client_url, self.peer_url,
            self.initial_cluster, "--initial-cluster-state", "new", "--initial-cluster-token", "bench", *self.flags,
        ]

    def start(self):
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        log.close()

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def cpu_seconds(self):
        return cpu_seconds(self.proc.pid) if self.alive() else None

    def sample_rss(self):
        """Current RSS in KiB; also folds the kernel's high-water mark into peak_rss_kib."""
        if not self.alive():
            return None
        hwm = proc_status_kib(self.proc.pid, "VmHWM") or 0
        self.peak_rss_kib = max(self.peak_rss_kib, hwm)
        return proc_status_kib(self.proc.pid, "VmRSS")

    def stop(self):
        if self.proc is None:
            return
        if self.alive():
            self.sample_rss()
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def log_tail(self, lines=5):
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-lines:]).strip()
        except OSError:
            return ""


class Cluster:
    """`size` members of one server kind on loopback; `flags` are added to every member's command."""

    def __init__(self, kind, binary, workdir, size, bench, flags=()):
        os.makedirs(workdir, exist_ok=True)
        self.kind, self.bench = kind, bench
        ports = free_ports(2 * size)
        names = [f"{kind}-{size}m-n{i + 1}" for i in range(size)]
        cluster = ",".join(f"{n}=http://127.0.0.1:{ports[2 * i + 1]}" for i, n in enumerate(names))
        self.members = [
            Member(kind, binary, workdir, n, ports[2 * i], ports[2 * i + 1], cluster, flags)
            for i, n in enumerate(names)
        ]

    @property
    def endpoints(self):
        return ",".join(m.client_url for m in self.members)

    def start(self, wait=60):
        """Starts every member and waits until all serve; returns seconds from start to serving."""
        t0 = time.monotonic()
        for m in self.members:
            m.start()
        out = subprocess.run(
            [self.bench, "--endpoints", self.endpoints, "ready", "--wait", f"{wait}s", "--json"],
            capture_output=True, text=True, timeout=wait + 30,
        )
        took = time.monotonic() - t0
        if out.returncode != 0 or any(not m.alive() for m in self.members):
            raise RuntimeError(self.describe_failure(out.stderr.strip()))
        return took

    def describe_failure(self, probe_error):
        """One line per member: its exit status and last log line, or that it was not serving."""
        parts = []
        for m in self.members:
            if m.alive():
                parts.append(f"{m.name} running but not serving ({probe_error.splitlines()[-1] if probe_error else '?'})")
            else:
                last = m.log_tail(1).replace("|", "\\|")
                parts.append(f"{m.name} exited with status {m.proc.returncode}: `{last}`")
        return "; ".join(parts)

    def cpu_seconds(self):
        """CPU seconds used by all members together (None if one is not running)."""
        used = [m.cpu_seconds() for m in self.members]
        return None if None in used else sum(used)

    def sample_rss(self):
        return [m.sample_rss() for m in self.members]

    def peak_rss_kib(self):
        self.sample_rss()
        return max(m.peak_rss_kib for m in self.members)

    def data_size(self):
        sizes = [dir_size(m.data_dir) for m in self.members]
        return max(s[0] for s in sizes), max(s[1] for s in sizes)

    def stop(self):
        for m in self.members:
            m.stop()

    def restart(self, wait=120):
        """Graceful stop, then start on the same data; returns seconds until serving again."""
        self.stop()
        return self.start(wait)

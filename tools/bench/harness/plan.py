"""What the comparison runs: the workload matrix, the 3-member subset and the scale run.

A workload is the `metastore-bench` arguments after `--endpoints` plus how to read its JSON
report into table rows. Keys are 16 bytes and values 256 bytes throughout (the scale run's
shape), each workload under its own key prefix so none reads another's data. Durations are
per run; `--total` is not used so that a slow server cannot stretch the run.
"""

# Per-mode knobs: seconds per run, scale-run key count, which optional workloads run.
# scan_*: the put-under-scan scenario (keys loaded, seconds per phase, cluster sizes, cap on one
# whole run including the load).
MODES = {
    "quick": {"duration": 3, "scale_keys": 100_000, "scale_load_cap": 150, "full_only": False,
              "scan_keys": 100_000, "scan_duration": 10, "scan_sizes": (1, 3), "scan_cap": 240},
    "full": {"duration": 15, "scale_keys": 1_000_000, "scale_load_cap": 420, "full_only": True,
             "scan_keys": 1_000_000, "scan_duration": 20, "scan_sizes": (1, 3), "scan_cap": 540},
}

KV = ["--key-size", "16", "--val-size", "256"]


def conc(conns, clients):
    return ["--conns", str(conns), "--clients", str(clients)]


# Each entry: id, title, global args, subcommand args, row kind, full-mode only.
WORKLOADS = [
    ("put-1", "put, 1 client", conc(1, 1),
     ["put", *KV, "--key-space-size", "100000", "--key-prefix", "p1/"], "req", False),
    ("put-100", "put, 100 clients / 10 conns", conc(10, 100),
     ["put", *KV, "--key-space-size", "100000", "--key-prefix", "p2/"], "req", False),
    ("put-1000", "put, 1000 clients / 100 conns", conc(100, 1000),
     ["put", *KV, "--key-space-size", "100000", "--key-prefix", "p3/"], "req", True),
    ("range-l-1", "range l, 1 key, 1 client", conc(1, 1),
     ["range", "--key", "rk/00000000000001", "--load", "1", "--consistency", "l"], "req", True),
    ("range-l", "range l, 1 key, 100 clients", conc(10, 100),
     ["range", "--key", "rk/00000000000001", "--load", "1", "--consistency", "l"], "req", False),
    ("range-s", "range s, 1 key, 100 clients", conc(10, 100),
     ["range", "--key", "rk/00000000000001", "--load", "1", "--consistency", "s"], "req", False),
    ("range-prefix", "range l, prefix of 100 keys, 100 clients", conc(10, 100),
     ["range", "--key", "rp/000000", "--prefix", "--load", "100", "--consistency", "l"], "req", False),
    ("txn-put", "txn-put, 10 puts/txn, 100 clients", conc(10, 100),
     ["txn-put", *KV, "--txn-ops", "10", "--key-space-size", "100000", "--key-prefix", "tp/"], "req", False),
    ("txn-mixed", "txn-mixed, 4 reads : 1 write, 100 clients", conc(10, 100),
     ["txn-mixed", *KV, "--rw-ratio", "4", "--key-space-size", "10000", "--key-prefix", "tm/"], "mixed", False),
    ("watch", "watch, 1000 watchers / 10 streams, puts at 1000/s", [*conc(10, 10), "--rate", "1000"],
     ["watch", "--streams", "10", "--watch-per-stream", "100", "--watched-key-total", "10", "--key-size", "16",
      "--val-size", "256"], "watch", False),
    ("watch-latency", "watch-latency, 100 watchers, puts at 100/s", [*conc(10, 1), "--rate", "100"],
     ["watch-latency", "--streams", "10", "--watchers-per-stream", "10", "--val-size", "256"], "wlat", False),
    ("lease-keepalive", "lease-keepalive, 100 clients", conc(10, 100), ["lease-keepalive"], "req", False),
    ("k8s", "k8s mix, 100 clients, 4 informers", conc(10, 100), ["k8s"], "k8s", False),
]

# The 3-member subset: (id, extra global args). Writes go to the leader, reads to all members.
CLUSTER_WORKLOADS = [
    ("put-1", ["--target-leader"]),
    ("put-100", []),
    ("range-l", []),
    ("range-s", []),
    ("txn-put", ["--target-leader"]),
    ("k8s", []),
]
CLUSTER_QUICK = {"put-1", "put-100", "range-l", "range-s"}


def matrix(mode):
    cfg = MODES[mode]
    return [w for w in WORKLOADS if cfg["full_only"] or not w[5]]


def cluster_matrix(mode):
    by_id = {w[0]: w for w in WORKLOADS}
    out = []
    for wid, extra in CLUSTER_WORKLOADS:
        if mode == "quick" and wid not in CLUSTER_QUICK:
            continue
        w = by_id[wid]
        out.append((w[0], w[1], [*w[2], *extra], w[3], w[4]))
    return out


def scale_load_args(keys):
    """Loads `keys` keys `s/<14 digits>` as transactions of 100 sequential puts."""
    txns = (keys + 99) // 100
    return [*conc(4, 16), "--total", str(txns),
            "txn-put", *KV, "--txn-ops", "100", "--sequential-keys", "--key-space-size", str(keys),
            "--key-prefix", "s/"]


def scale_reads(keys):
    """(id, title, args) of the point get and the 1,000-key prefix read after the load."""
    mid = keys // 2
    block = (mid // 1000) * 1000  # a block of 1,000 keys fully inside the loaded range
    return [
        ("scale-get", "point get (l), 1 client", [*conc(1, 1), "range", "--key", f"s/{mid:014d}"]),
        ("scale-prefix", "1,000-key prefix (l), 1 client",
         [*conc(1, 1), "range", "--key", f"s/{block // 1000:011d}", "--prefix"]),
    ]


SCAN_CLIENTS = (10, 10)  # conns, clients of the timed puts


def scan_args(keys, size):
    """put-under-scan: load `keys` keys `s/<14 digits>`, then puts on `w/` without and with one
    scanner looping a linearizable full-keyspace Range (values included). On 3 members the puts
    and the scanner go to the leader, where a stalled raft loop would cost heartbeats."""
    return [*conc(*SCAN_CLIENTS), *(["--target-leader"] if size > 1 else []),
            "put-under-scan", *KV, "--key-space-size", "100000", "--key-prefix", "w/",
            "--load-keys", str(keys), "--load-prefix", "s/", "--load-key-size", "16", "--load-val-size", "256",
            "--load-parallel", "16", "--scanners", "1", "--scan-timeout", "120s"]

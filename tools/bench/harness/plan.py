"""What the comparison runs: the workload matrix, the 3-member subset, the scale run and the auth runs.

A workload is the `metastore-bench` arguments after `--endpoints` plus how to read its JSON
report into table rows. Keys are 16 bytes and values 256 bytes throughout (the scale run's
shape), each workload under its own key prefix so none reads another's data. Durations are
per run; `--total` is not used so that a slow server cannot stretch the run.
"""

# Per-mode knobs: seconds per run, scale-run key count, which optional workloads run.
# scan_*: the put-under-scan scenario (keys loaded, seconds per phase, cluster sizes, cap on one
# whole run including the load). auth_duration: seconds per run of the auth section (longer than
# `duration` in quick mode: a login storm at cost 10 completes only a few dozen bcrypt checks a second).
MODES = {
    "quick": {"duration": 3, "scale_keys": 100_000, "scale_load_cap": 150, "full_only": False,
              "scan_keys": 100_000, "scan_duration": 10, "scan_sizes": (1, 3), "scan_cap": 240,
              "auth_duration": 5, "defrag_keys": 100_000, "defrag_duration": 10, "defrag_cap": 240},
    "full": {"duration": 15, "scale_keys": 1_000_000, "scale_load_cap": 420, "full_only": True,
             "scan_keys": 1_000_000, "scan_duration": 20, "scan_sizes": (1, 3), "scan_cap": 540,
             "auth_duration": 15, "defrag_keys": 1_000_000, "defrag_duration": 20, "defrag_cap": 600},
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
     ["put", *KV, "--key-space-size", "100000", "--key-prefix", "p3/"], "req", False),
    # etcd's own tool, as in its published figures: `benchmark --conns 10 --clients 100 put --key-size 8
    # --val-size 256 --total 100000 --sequential-keys=false` (random keys in a key space of 1: one key).
    ("put-etcd-tool", "put, etcd benchmark-tool shape (8 B key, 100 clients / 10 conns)",
     [*conc(10, 100), "--total", "100000"], ["put", "--key-size", "8", "--val-size", "256"], "req", False),
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
    ("put-1000", []),
    ("put-etcd-tool", []),
    ("range-l", []),
    ("range-s", []),
    ("txn-put", ["--target-leader"]),
    ("txn-mixed", []),
    ("k8s", []),
]
CLUSTER_QUICK = {"put-1", "put-100", "put-etcd-tool", "range-l", "range-s", "txn-put"}


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


# Both servers of the scale run get etcd's quota raised to 8 GiB: 10M keys of 256 B values pass
# etcd's default 2 GiB.
SCALE_FLAGS = ["--quota-backend-bytes", str(8 << 30)]


def scale_load_cap(mode, keys):
    """Seconds the scale load may take: the mode's cap, or 2,000 keys/s for larger key counts."""
    return max(MODES[mode]["scale_load_cap"], keys // 2000)


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


DEFRAG_CLIENTS = (10, 10)  # conns, clients of the timed puts


def defrag_args(keys):
    """put-under-defrag: load `keys` keys `d/<14 digits>`, then puts on `w/` (100,000-key space)
    for a phase with nothing else running and a phase with a Defragment sent 2 s in."""
    return [*conc(*DEFRAG_CLIENTS), "put-under-defrag", *KV, "--key-space-size", "100000", "--key-prefix", "w/",
            "--load-keys", str(keys), "--load-prefix", "d/", "--load-key-size", "16", "--load-val-size", "256",
            "--load-parallel", "16", "--defrag-after", "2s"]


# The auth section. Both servers get the same users, made with etcdctl before `auth enable`: root
# (role root, needed to enable auth) and a non-root user holding one role with a readwrite grant on
# AUTH_PREFIX, under which every auth workload's keys live. Passwords are hashed at each server's
# default bcrypt cost (10).
AUTH_ROOT = ("root", "root-pw")
AUTH_USER = ("bench", "bench-pw")
AUTH_PREFIX = "ab/"


def auth_modes(jwt_public, jwt_private):
    """(id, title, extra server flags, authenticated) of each auth configuration, in run order."""
    jwt = f"jwt,pub-key={jwt_public},priv-key={jwt_private},sign-method=RS256"
    return [
        ("off", "auth off", [], False),
        ("simple", "auth on, simple tokens", ["--auth-token", "simple"], True),
        ("jwt", "auth on, JWT RS256", ["--auth-token", jwt], True),
    ]


def auth_setup():
    """etcdctl commands (after `--endpoints EP`) that create the users and enable auth."""
    root, user = AUTH_ROOT, AUTH_USER
    return [
        ["user", "add", f"{root[0]}:{root[1]}", "--interactive=false"],
        ["role", "add", "root"],
        ["user", "grant-role", root[0], "root"],
        ["role", "add", user[0]],
        ["role", "grant-permission", user[0], "readwrite", AUTH_PREFIX, "--prefix=true"],
        ["user", "add", f"{user[0]}:{user[1]}", "--interactive=false"],
        ["user", "grant-role", user[0], user[0]],
        ["auth", "enable"],
    ]


def auth_user_args():
    return ["--user", f"{AUTH_USER[0]}:{AUTH_USER[1]}"]


# (id, title, global args, subcommand args) of the throughput runs, each under every auth mode.
AUTH_WORKLOADS = [
    ("put", "put, 100 clients / 10 conns", conc(10, 100),
     ["put", *KV, "--key-space-size", "100000", "--key-prefix", AUTH_PREFIX + "p/"]),
    ("range", "range l, 1 key, 100 clients", conc(10, 100),
     ["range", "--key", AUTH_PREFIX + "r/000000000001", "--load", "1", "--consistency", "l"]),
]

# The stall check: one put client timed alone, then while AUTH_STORM_CLIENTS clients call
# Authenticate in a loop. The storm starts AUTH_STORM_LEAD s before the timed puts and is given
# AUTH_STORM_EXTRA s more than them, so it covers the puts' connection (whose own Authenticate
# queues behind the storm's, seconds on 2 cores) and their whole run.
AUTH_STALL_PUT = [*conc(1, 1), "put", *KV, "--key-space-size", "100000", "--key-prefix", AUTH_PREFIX + "s/"]
AUTH_STORM_CLIENTS = 100
AUTH_STORM = [*conc(10, AUTH_STORM_CLIENTS), "authenticate"]
AUTH_STORM_LEAD = 2
AUTH_STORM_EXTRA = 15

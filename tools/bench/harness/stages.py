"""Where the time of one put goes, from each server's own metrics.

Both servers are started with `--metrics extensive`, which adds `grpc_server_handling_seconds`
(go-grpc-prometheus's per-RPC histogram; MetaStore keeps the same one). Around the 1-client put
row the harness reads every member's `/metrics` before and after, and the difference of the
histograms' sums and counts gives, for the member that served the puts: the mean time inside the
gRPC Put handler, the mean WAL fdatasync and how many a put costs, and the mean backend commit
(etcd's bbolt commit, batched every 100 ms; MetaStore's applier write, one per raft turn). With
the client-observed mean from `metastore-bench`, that splits one put into: outside the handler
(the client, HTTP/2 and protobuf on both sides, loopback), the member's own WAL fsync, and the rest
of the handler (propose, raft turn, the followers' round trip on 3 members, apply, respond). On
3 members the followers' mean fdatasync is shown too: theirs runs while the leader's does, and the
leader waits for one ack.

The two handler histograms are not measured at exactly the same points: go-grpc-prometheus times
the handler after the request is decoded, MetaStore's layer times the whole call including the
decode (a few microseconds).
"""

from harness.render import fmt_num, ratio, table

# The metrics read, by the name of their histogram (sum and count are used).
HANDLER = "grpc_server_handling_seconds"
FSYNC = "etcd_disk_wal_fsync_duration_seconds"
COMMIT = "etcd_disk_backend_commit_duration_seconds"
PUT = (("grpc_method", "Put"), ("grpc_service", "etcdserverpb.KV"))

# Workload ids (single and 3-member) whose runs are split this way.
ROWS = {"put-1"}
FLAGS = ["--metrics", "extensive"]


def snapshot(cluster, metrics):
    """Every member's metrics now (`metrics` is servers.metrics)."""
    return [metrics(m.client_url) for m in cluster.members]


def _delta(before, after, name, labels=()):
    """(sum, count) of histogram `name` added between two readings, over series carrying `labels`."""
    out = []
    for suffix in ("_sum", "_count"):
        total = 0.0
        for (n, ls), v in after.items():
            if n == name + suffix and all(pair in ls for pair in labels):
                total += v - before.get((n, ls), 0.0)
        out.append(total)
    return tuple(out)


def _mean_ms(sum_count):
    s, c = sum_count
    return s / c * 1000 if c > 0 else None


def breakdown(before, after, report):
    """The split of one put (ms) from two snapshots of every member and the run's report."""
    handlers = [_delta(b, a, HANDLER, PUT) for b, a in zip(before, after)]
    if not handlers:
        return None
    served = max(range(len(handlers)), key=lambda i: handlers[i][1])
    handler, b, a = handlers[served], before[served], after[served]
    puts = handler[1]
    if puts <= 0:
        return None
    fsync, commit = _delta(b, a, FSYNC), _delta(b, a, COMMIT)
    followers = [_delta(before[i], after[i], FSYNC) for i in range(len(handlers)) if i != served]
    follower_fsync = (sum(f[0] for f in followers), sum(f[1] for f in followers))
    client = (report.get("latency_ms") or {}).get("mean")
    handler_ms, fsync_ms = _mean_ms(handler), _mean_ms(fsync)
    fsyncs_per_put = fsync[1] / puts
    on_path = fsync_ms * min(1.0, fsyncs_per_put) if fsync_ms is not None else 0.0
    return {
        "puts": puts,
        "client_ms": client,
        "handler_ms": handler_ms,
        "outside_ms": client - handler_ms if client is not None else None,
        "fsync_ms": fsync_ms,
        "fsyncs_per_put": fsyncs_per_put,
        "rest_ms": handler_ms - on_path,
        "commit_ms": _mean_ms(commit),
        "commits_per_put": commit[1] / puts,
        "follower_fsync_ms": _mean_ms(follower_fsync) if followers else None,
    }


ROW_SPECS = [
    ("client-observed put, mean (ms)", "client_ms", "ms"),
    ("gRPC Put handler, mean (ms)", "handler_ms", "ms"),
    ("outside the handler: client, HTTP/2 + protobuf, loopback (ms)", "outside_ms", "ms"),
    ("WAL fdatasync, mean (ms)", "fsync_ms", "ms"),
    ("WAL fdatasyncs per put", "fsyncs_per_put", "x"),
    ("handler time besides its own WAL fdatasync (ms)", "rest_ms", "ms"),
    ("followers' WAL fdatasync, mean (ms)", "follower_fsync_ms", "ms"),
    ("backend commit, mean (ms)", "commit_ms", "ms"),
    ("backend commits per put", "commits_per_put", "x"),
]


def section(etcd, ms):
    """The markdown table for one split row, or '' when neither server's split is known."""
    if not etcd and not ms:
        return ""
    rows = []
    for title, key, unit in ROW_SPECS:
        e, m = (etcd or {}).get(key), (ms or {}).get(key)
        if e is None and m is None:
            continue
        if unit == "x":
            rows.append((title, *("-" if v is None else f"{v:.2f}" for v in (e, m)), ""))
        else:
            rows.append((title, fmt_num(e, "ms"), fmt_num(m, "ms"), ratio(e, m)))
    return table(rows, ("where one put goes (1 client)", "etcd", "MetaStore", "MetaStore / etcd"))

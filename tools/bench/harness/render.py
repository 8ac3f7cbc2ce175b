"""Turns `metastore-bench --json` reports into table rows and the markdown document.

A row is (workload, metric, etcd cell, MetaStore cell, ratio). The ratio is always
MetaStore / etcd of the figure in that row: above 1 is better for a rate, worse for a latency.
A side that failed every request shows "unsupported" (all failures `Unimplemented`) or
"failed", with the gRPC codes; a side with some failures shows its figure and the failure
counts, and the ratio gets a `*` (it compares successful requests only).
"""


def fmt_num(v, unit):
    if v is None:
        return "-"
    if unit == "ms":
        return f"{v:.3f}" if v < 1 else (f"{v:.2f}" if v < 100 else f"{v:.0f}")
    if unit == "us":
        return f"{v:.1f}" if v < 100 else f"{v:,.0f}"
    if unit == "MiB":
        return f"{v:.0f}" if v >= 10 else f"{v:.1f}"
    if unit == "s":
        return f"{v:.2f}"
    return f"{v:,.0f}"


def failures(report):
    """{code: count} with any `put/`, `setup/`, `watch/` prefix kept."""
    return {code: n for code, n in (report or {}).get("errors", {}).items()}


def failure_note(report):
    errs = failures(report)
    if not errs:
        return ""
    return ", ".join(f"{c}×{n}" for c, n in sorted(errs.items()))


def all_unimplemented(report):
    errs = failures(report)
    return bool(errs) and all(c.split("/")[-1] == "Unimplemented" for c in errs)


def side_failed(report, ok):
    """Cell text when a side produced no figure, else None."""
    if report is None:
        return "not run"
    if "skipped_reason" in report:
        return report["skipped_reason"]
    if "harness_error" in report:
        return f"error: {report['harness_error']}"
    if ok:
        return None
    if all_unimplemented(report):
        return f"unsupported ({failure_note(report)})"
    if failures(report):
        return f"failed ({failure_note(report)})"
    return report.get("extra", {}).get("skipped", "no result")


def ratio(a, b):
    if a is None or b is None or a == 0:
        return "-"
    return f"{b / a:.2f}"


def lat(report, q, op=None):
    if report is None:
        return None
    src = report.get("by_op", {}).get(op, {}) if op else report
    return src.get("latency_ms", {}).get(q)


def op_row(r, op, q="p99"):
    """A by-op latency row; when the op never succeeded, says how many times it failed."""
    o = r.get("by_op", {}).get(op, {})
    ok = o.get("ok", 0) > 0
    return (f"{op} {q} ms", "ms", lat(r, q, op), ok, None if ok else f"all {o.get('errors', 0)} failed")


def cpu_rows(r):
    """CPU µs per successful request: the server (every member together) and the load generator,
    measured around the run (`compare.checked`)."""
    if "cpu" not in r:
        return []  # a report from before the harness measured CPU
    cpu, done = r["cpu"], r.get("ok", 0)
    if not cpu or done <= 0:
        return [("server CPU µs/req", "us", None, False, None), ("client CPU µs/req", "us", None, False, None)]
    return [("server CPU µs/req", "us", cpu["server_s"] * 1e6 / done, True, None),
            ("client CPU µs/req", "us", cpu["client_s"] * 1e6 / done, True, None)]


def metric_rows(kind, r):
    """[(label, unit, value, ok, why-not)] for one report of a workload kind, or None."""
    if r is None or "harness_error" in r:
        return None
    extra = r.get("extra", {})
    ok = r.get("ok", 0) > 0
    if kind in ("req", "mixed", "k8s"):
        rows = [("req/s", "n", r.get("throughput"), ok, None), ("p50 ms", "ms", lat(r, "p50"), ok, None),
                ("p99 ms", "ms", lat(r, "p99"), ok, None)]
        rows += cpu_rows(r)
        if kind == "mixed":
            rows += [op_row(r, op) for op in ("read", "write")]
        if kind == "k8s":
            rows += [op_row(r, op) for op in ("get", "list", "cas", "put-lease")]
            watching = extra.get("watchers_created", 0) > 0
            why = None if watching else "no watch: " + ", ".join(c for c in failures(r) if c.startswith("watch/"))
            rows.append(("informer events", "n", extra.get("watch_events_delivered"), watching, why))
        return rows
    if kind == "watch":
        got, expected = extra.get("events_delivered"), extra.get("events_expected")
        pct = 100.0 * got / expected if ok and got is not None and expected else None
        return [("events/s delivered", "n", extra.get("events_per_second"), ok and bool(got), None),
                ("delivered / expected", "pct", pct, pct is not None, None),
                ("puts/s achieved", "n", extra.get("put_throughput"), ok, None),
                ("watch create p99 ms", "ms", lat(r, "p99"), ok, None)]
    if kind == "wlat":
        timed = extra.get("deliveries_timed") or 0
        early = 100.0 * extra.get("delivered_before_ack", 0) / timed if timed else None
        return [("ack→event p50 ms", "ms", lat(r, "p50"), ok, None), ("ack→event p99 ms", "ms", lat(r, "p99"), ok, None),
                ("events before the put's ack", "pct", early, early is not None, None),
                ("send→event p50 ms", "ms", extra.get("send_to_delivery_ms", {}).get("p50"), ok, None),
                ("send→event p99 ms", "ms", extra.get("send_to_delivery_ms", {}).get("p99"), ok, None)]
    raise ValueError(kind)


def workload_rows(title, kind, etcd, ms):
    """Rows comparing two reports (either may be None or a harness error)."""
    e_rows, m_rows = metric_rows(kind, etcd), metric_rows(kind, ms)
    template = e_rows or m_rows or [("req/s", "n", None, False, None)]
    out = []
    for i, (label, *_rest) in enumerate(template):
        cells, values = [], []
        for rep, rows in ((etcd, e_rows), (ms, m_rows)):
            _, unit, v, ok, why = rows[i] if rows else (label, "n", None, False, None)
            if not ok or v is None:
                cells.append((side_failed(rep, False) or "-") if i == 0 else (why or "-"))
                values.append(None)
                continue
            text = f"{v:.1f}%" if unit == "pct" else fmt_num(v, unit)
            if i == 0 and failures(rep):
                text += f" ({failure_note(rep)})"
            cells.append(text)
            values.append(v)
        r = ratio(values[0], values[1])
        if r != "-" and (failures(etcd) or failures(ms)):
            r += "*"
        out.append((title if i == 0 else "", label, cells[0], cells[1], r))
    return out


def table(rows, head=("workload", "metric", "etcd", "MetaStore", "MetaStore / etcd")):
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(str(c) for c in r) + " |")
    return "\n".join(lines)


def mib(kib_or_bytes, is_bytes=False):
    if kib_or_bytes is None:
        return None
    return kib_or_bytes / (1024 * 1024 if is_bytes else 1024)

"""The `gateway` section: JSON put and range over HTTP (`POST /v3/kv/put`, `POST /v3/kv/range`) against
etcd's grpc-gateway and MetaStore's, one fresh single member of each, side by side.

The load generator is here, in Python (standard library only): `CLIENTS` threads, each with its own
keep-alive HTTP/1.1 connection, send requests back to back for the run's duration. Keys are
`gw/<6 digits>` out of `KEYS`, values 256 bytes; the range workload reads keys the put workload wrote.
A Python client tops out at a few thousand requests a second on this machine, so the figures measure
both servers through the same, possibly limiting, client; the ratio is the point.
"""

import base64
import http.client
import json
import random
import threading
import time

from harness import render

CLIENTS = 16
KEYS = 1000
VALUE = base64.b64encode(b"v" * 256).decode()


def key(i):
    return base64.b64encode(b"gw/%06d" % i).decode()


def body(workload, rng):
    k = key(rng.randrange(KEYS))
    if workload == "put":
        return json.dumps({"key": k, "value": VALUE})
    return json.dumps({"key": k})


def client(host, port, workload, deadline, seed, out):
    rng = random.Random(seed)
    conn = http.client.HTTPConnection(host, port, timeout=10)
    path = "/v3/kv/put" if workload == "put" else "/v3/kv/range"
    lat, errors = [], {}
    while time.monotonic() < deadline:
        t0 = time.perf_counter()
        try:
            conn.request("POST", path, body=body(workload, rng), headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            data = resp.read()
            if resp.status != 200 or b'"header"' not in data:
                errors[str(resp.status)] = errors.get(str(resp.status), 0) + 1
                continue
        except (OSError, http.client.HTTPException) as e:
            errors[type(e).__name__] = errors.get(type(e).__name__, 0) + 1
            conn.close()
            conn = http.client.HTTPConnection(host, port, timeout=10)
            continue
        lat.append((time.perf_counter() - t0) * 1000)
    conn.close()
    out.append((lat, errors))


def run(endpoint, workload, duration):
    """One workload against one server: a report shaped like `metastore-bench --json`'s."""
    host, port = endpoint.split("://", 1)[1].rstrip("/").rsplit(":", 1)
    deadline = time.monotonic() + duration
    out = []
    threads = [threading.Thread(target=client, args=(host, int(port), workload, deadline, i, out))
               for i in range(CLIENTS)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(duration + 30)
    elapsed = time.monotonic() - started
    lat = sorted(x for part, _ in out for x in part)
    errors = {}
    for _, e in out:
        for code, n in e.items():
            errors[code] = errors.get(code, 0) + n

    def q(p):
        return lat[min(len(lat) - 1, int(p * len(lat)))] if lat else None

    return {"throughput": len(lat) / elapsed, "ops": len(lat), "errors": errors,
            "latency_ms": {"p50": q(0.50), "p99": q(0.99), "max": lat[-1] if lat else None}}


def preload(endpoint):
    """Writes every key once, so the range workload finds them."""
    host, port = endpoint.split("://", 1)[1].rstrip("/").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    for i in range(KEYS):
        conn.request("POST", "/v3/kv/put", body=json.dumps({"key": key(i), "value": VALUE}))
        resp = conn.getresponse()
        resp.read()
        if resp.status != 200:
            raise RuntimeError(f"preloading {endpoint}: HTTP {resp.status}")
    conn.close()


def section(g):
    rows = []
    for wid, title in (("gateway-put", "JSON put"), ("gateway-range", "JSON range")):
        sides = g["workloads"].get(wid, {})
        etcd, ms = sides.get("etcd", {}), sides.get("metastore", {})
        rows.append((title, "req/s", render.fmt_num(etcd.get("throughput"), ""),
                     render.fmt_num(ms.get("throughput"), ""),
                     render.ratio(etcd.get("throughput"), ms.get("throughput"))))
        for qn in ("p50", "p99"):
            e, m = etcd.get("latency_ms", {}).get(qn), ms.get("latency_ms", {}).get(qn)
            rows.append(("", f"{qn} ms", render.fmt_num(e, "ms"), render.fmt_num(m, "ms"), render.ratio(e, m)))
        for name, side in (("etcd", etcd), ("MetaStore", ms)):
            if side.get("errors"):
                rows.append(("", f"{name} failures", "", ", ".join(f"{k} ×{v}" for k, v in side["errors"].items()), ""))
    return (f"{CLIENTS} HTTP/1.1 keep-alive clients (Python threads, `tools/bench/harness/gateway.py`), "
            f"{g['duration']} s per run, keys `gw/<6 digits>` out of {KEYS:,}, 256-byte values, requests as "
            "etcd's gateway takes them (base64 keys and values); range reads keys written beforehand.\n\n"
            + render.table(rows))

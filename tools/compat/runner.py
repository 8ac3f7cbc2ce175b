#!/usr/bin/env python3
"""Run an etcdctl script against a live endpoint and print a normalised transcript.

Used by run-script.sh (which owns the server process); standard library only.

Script syntax (one etcdctl invocation per line, without the leading "etcdctl"):

    # a comment line; blank lines are ignored
    put foo bar                      # trailing comments are allowed (shell rules)
    put "key with space" 'value'     # quoting follows POSIX shell word splitting
    txn -i <<EOF                     # heredoc: the lines up to a line that is
    value("foo") = "bar"             # exactly "EOF" are fed to stdin verbatim
                                     # (a blank line inside is kept)
    put foo baz

    EOF

No shell expansion happens ($VAR, globs, pipes are literal). A leading
"etcdctl" word is tolerated and dropped. The command (e.g. "get",
"endpoint status") must come first on the line; flags follow.
The harness itself passes --endpoints, --dial-timeout and --command-timeout
before the script's words; scripts should not set these.

Directives (a line starting with "@"):

    @timeout 2 watch --rev=1 foo     # kill etcdctl after 2 s, keep its output
    @timeout 3 @hold-stdin watch -i <<EOF
    watch foo                        # stdin is written but left open until
    progress                         # the process is killed (interactive mode)
    EOF
    @sleep 3                         # wait 3 s (e.g. for a lease to expire)

Lease references: {LEASE1}, {LEASE2}, ... in a command's words (or heredoc)
are replaced by the hex id (as etcdctl prints it) of the 1st, 2nd, ...
lease granted by "lease grant" in this run; the transcript shows the
reference, not the id.
"""

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import threading
import time

HEREDOC_RE = re.compile(r"^<<([A-Za-z_][A-Za-z0-9_]*)$")

# Go time.Duration.String(), e.g. 1.387394ms, 2.1s, 1m2.5s, 850µs, 120ns
GO_DURATION = r"(?:[0-9]+(?:\.[0-9]+)?(?:ns|us|µs|μs|ms|s|m|h))+"


# --------------------------------------------------------------------------
# script parsing


class ScriptError(Exception):
    pass


class Step:
    def __init__(self, lineno, argv, stdin=None, timeout=None, hold_stdin=False, sleep=None):
        self.lineno = lineno
        self.argv = argv          # etcdctl words (may contain {LEASEn} references)
        self.stdin = stdin        # heredoc text or None
        self.timeout = timeout    # @timeout N: seconds after which etcdctl is killed
        self.hold_stdin = hold_stdin
        self.sleep = sleep        # @sleep N: no command, just wait

    # Unpacks like the (lineno, argv, stdin) tuples parse_script used to return.
    def __iter__(self):
        return iter((self.lineno, self.argv, self.stdin))

    def __getitem__(self, i):
        return (self.lineno, self.argv, self.stdin)[i]

    def __len__(self):
        return 3


POSINT_RE = re.compile(r"^[0-9]+(?:\.[0-9]+)?$")
LEASE_REF_RE = re.compile(r"\{LEASE([1-9][0-9]*)\}")


def parse_directives(path, lineno, words):
    """Strip leading @directives; return (words, timeout, hold_stdin, sleep)."""
    timeout, hold, sleep = None, False, None
    while words and words[0].startswith("@"):
        d = words[0]
        if d in ("@timeout", "@sleep"):
            if len(words) < 2 or not POSINT_RE.match(words[1]) or float(words[1]) <= 0:
                raise ScriptError("%s:%d: %s needs a positive number of seconds" % (path, lineno, d))
            if d == "@timeout":
                timeout = float(words[1])
            else:
                sleep = float(words[1])
            words = words[2:]
        elif d == "@hold-stdin":
            hold = True
            words = words[1:]
        else:
            raise ScriptError("%s:%d: unknown directive %s" % (path, lineno, d))
    if sleep is not None and (words or timeout is not None or hold):
        raise ScriptError("%s:%d: @sleep stands alone" % (path, lineno))
    if hold and timeout is None:
        raise ScriptError("%s:%d: @hold-stdin needs @timeout (the process would never end)"
                          % (path, lineno))
    return words, timeout, hold, sleep


def parse_script(path):
    """Return a list of Step (each also unpacks as (lineno, argv, stdin))."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    steps = []
    i = 0
    while i < len(lines):
        lineno = i + 1
        raw = lines[i]
        i += 1
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        try:
            words = shlex.split(raw, comments=True, posix=True)
        except ValueError as e:
            raise ScriptError("%s:%d: %s" % (path, lineno, e))
        if not words:
            continue
        words, timeout, hold, sleep = parse_directives(path, lineno, words)
        if sleep is not None:
            steps.append(Step(lineno, [], sleep=sleep))
            continue
        stdin = None
        m = HEREDOC_RE.match(words[-1]) if words else None
        if m:
            tag = m.group(1)
            words = words[:-1]
            body = []
            while True:
                if i >= len(lines):
                    raise ScriptError(
                        "%s:%d: heredoc <<%s not terminated" % (path, lineno, tag))
                line = lines[i]
                i += 1
                if line.rstrip() == tag:
                    break
                body.append(line)
            stdin = "".join(l + "\n" for l in body)
        if hold and stdin is None:
            raise ScriptError("%s:%d: @hold-stdin needs a heredoc" % (path, lineno))
        if words and words[0] == "etcdctl":
            words = words[1:]
        if not words:
            raise ScriptError("%s:%d: empty command" % (path, lineno))
        steps.append(Step(lineno, words, stdin, timeout, hold))
    return steps


# --------------------------------------------------------------------------
# normalisation


class Normaliser:
    """Rewrites the parts of etcdctl output that legitimately differ between
    two servers (identities, raft bookkeeping, sizes, versions, addresses,
    timings) to fixed placeholders. Everything else is left byte-exact.

    Numeric identity/raft fields are only rewritten when non-zero, so a
    server that leaves e.g. header.cluster_id unset where etcd sets it (or
    the reverse, as in nested txn response headers) still shows up."""

    def __init__(self, client_url, peer_url, member_id=None, cluster_id=None):
        self.literal = []  # (compiled regex, replacement), applied in order
        for url, name in ((client_url, "client"), (peer_url, "peer")):
            if not url:
                continue
            self.literal.append((re.compile(re.escape(url) + r"(?![0-9])"),
                                 "<%s-url>" % name))
            hostport = re.sub(r"^[a-z]+://", "", url)
            self.literal.append((re.compile(re.escape(hostport) + r"(?![0-9])"),
                                 "<%s-addr>" % name))
        # Catch-all for ids that show up outside the known contexts (e.g. in
        # error messages). Only for long values so that a server using a tiny
        # id such as 1 cannot make us rewrite revisions or counts.
        for value, name in ((member_id, "member-id"), (cluster_id, "cluster-id")):
            if not value:
                continue
            for text in (str(value), "%x" % value, "%016x" % value):
                if len(text) >= 8:
                    self.literal.append(
                        (re.compile(r"(?<![0-9A-Za-z])" + re.escape(text) + r"(?![0-9A-Za-z])"),
                         "<%s>" % name))

    # generic rules, independent of the command -------------------------
    NONZERO = r"-?0*[1-9][0-9]*"
    GENERIC = [
        # zap log lines printed by the client library on stderr
        (re.compile(r'("ts":)"[^"]*"'), r'\1"<ts>"'),
        (re.compile(r"endpoint://client-[0-9a-fA-F-]+/"), "endpoint://client-<uuid>/"),
        # timings
        (re.compile(r"took = " + GO_DURATION), "took = <took>"),
        (re.compile(r'("took":)"' + GO_DURATION + '"'), r'\1"<took>"'),
        # -w json response headers and endpoint status
        (re.compile(r'"cluster_id":' + NONZERO + r"(?![0-9])"), '"cluster_id":<cluster-id>'),
        (re.compile(r'"member_id":' + NONZERO + r"(?![0-9])"), '"member_id":<member-id>'),
        (re.compile(r'"raft_term":' + NONZERO + r"(?![0-9])"), '"raft_term":<raft-term>'),
        (re.compile(r'"leader":' + NONZERO + r"(?![0-9])"), '"leader":<member-id>'),
        (re.compile(r'"raftTerm":' + NONZERO + r"(?![0-9])"), '"raftTerm":<raft-term>'),
        (re.compile(r'"raftIndex":' + NONZERO + r"(?![0-9])"), '"raftIndex":<raft-index>'),
        (re.compile(r'"raftAppliedIndex":' + NONZERO + r"(?![0-9])"),
         '"raftAppliedIndex":<raft-index>'),
        (re.compile(r'"dbSize":' + NONZERO + r"(?![0-9])"), '"dbSize":<db-size>'),
        (re.compile(r'"dbSizeInUse":' + NONZERO + r"(?![0-9])"), '"dbSizeInUse":<db-size>'),
        # server version: only string-valued ("version":1 is a kv version)
        (re.compile(r'"version":"[^"]*"'), '"version":"<version>"'),
        # -w fields
        (re.compile(r'^"ClusterID" : ' + NONZERO + "$", re.M), '"ClusterID" : <cluster-id>'),
        (re.compile(r'^"MemberID" : ' + NONZERO + "$", re.M), '"MemberID" : <member-id>'),
        (re.compile(r'^"RaftTerm" : ' + NONZERO + "$", re.M), '"RaftTerm" : <raft-term>'),
        (re.compile(r'^"Leader" : ' + NONZERO + "$", re.M), '"Leader" : <member-id>'),
        (re.compile(r'^"RaftIndex" : ' + NONZERO + "$", re.M), '"RaftIndex" : <raft-index>'),
        (re.compile(r'^"RaftAppliedIndex" : ' + NONZERO + "$", re.M),
         '"RaftAppliedIndex" : <raft-index>'),
        (re.compile(r'^"DBSize" : ' + NONZERO + "$", re.M), '"DBSize" : <db-size>'),
        (re.compile(r'^"DBSizeInUse" : ' + NONZERO + "$", re.M), '"DBSizeInUse" : <db-size>'),
        (re.compile(r'^"Version" : "[^"]*"$', re.M), '"Version" : "<version>"'),
    ]

    # member list: the member id is printed as "ID" (json: decimal, fields:
    # decimal, simple/table: hex). Lease ids also use "ID", so this is
    # restricted to member commands.
    MEMBER_RULES = [
        (re.compile(r'"ID":' + NONZERO + r"(?![0-9])"), '"ID":<member-id>'),
        (re.compile(r'^"ID" : ' + NONZERO + "$", re.M), '"ID" : <member-id>'),
    ]

    # table / simple columns per command
    TABLE_COLUMNS = {
        ("endpoint", "status"): {
            "ID": "<member-id>", "VERSION": "<version>", "DB SIZE": "<db-size>",
            "RAFT TERM": "<raft-term>", "RAFT INDEX": "<raft-index>",
            "RAFT APPLIED INDEX": "<raft-index>",
        },
        ("endpoint", "health"): {"TOOK": "<took>"},
        ("member", "list"): {"ID": "<member-id>"},
    }
    # simple output: ", "-separated; index -> placeholder
    SIMPLE_COLUMNS = {
        # endpoint, id, version, db size, is leader, is learner, raft term,
        # raft index, raft applied index, errors
        ("endpoint", "status"): (9, {1: "<member-id>", 2: "<version>", 3: "<db-size>",
                                     6: "<raft-term>", 7: "<raft-index>",
                                     8: "<raft-index>"}),
        # id, status, name, peer addrs, client addrs, is learner
        ("member", "list"): (6, {0: "<member-id>"}),
    }

    def normalise(self, text, argv):
        cmd = tuple(argv[:2])
        fmt = output_format(argv)
        for rx, rep in self.GENERIC:
            text = rx.sub(rep, text)
        if argv and argv[0] == "member":
            for rx, rep in self.MEMBER_RULES:
                text = rx.sub(rep, text)
        if fmt == "table" and cmd in self.TABLE_COLUMNS:
            text = normalise_tables(text, self.TABLE_COLUMNS[cmd], self.literal)
        if fmt == "simple" and cmd in self.SIMPLE_COLUMNS:
            ncols, cols = self.SIMPLE_COLUMNS[cmd]
            out = []
            for line in text.split("\n"):
                parts = line.split(", ")
                if len(parts) >= ncols:
                    for idx, rep in cols.items():
                        parts[idx] = rep
                    line = ", ".join(parts)
                out.append(line)
            text = "\n".join(out)
        for rx, rep in self.literal:
            text = rx.sub(rep, text)
        return text


class Leases:
    """Lease ids are chosen by the server (etcd: member-id bits + time +
    counter), so they differ between any two runs. Each id granted by
    "lease grant" (or shown as the session lease in a "lock"/"elect" key
    "<name>/<id>") is registered in order of first appearance and rewritten
    to LEASE1, LEASE2, ... in its hex form (etcdctl prints %016x, lock and
    elect keys %x) and its decimal form (json / fields). Ids that were never
    granted in this run (e.g. a literal 1234 in the script, or an id a
    server invents) are left alone, so they still show up in a diff.

    Remaining TTLs ("remaining(99s)", timetolive "ttl"/"TTL") count down
    with wall time. They are rewritten to <ttl-elapsed> only when
    remaining >= 0 and 0 <= granted - remaining <= (seconds since the
    command that last granted or refreshed that lease started) + 1; any
    other value (e.g. -1 for an expired lease) is kept, so a wrong
    countdown still differs."""

    GRANTED_SIMPLE = re.compile(r"^lease ([0-9a-f]+) granted with TTL\(", re.M)
    GRANTED_JSON = re.compile(r'"ID":([0-9]+)(?![0-9])')
    GRANTED_FIELDS = re.compile(r'^"ID" : ([0-9]+)$', re.M)

    TTL_SIMPLE = re.compile(r"^(lease ([0-9a-f]+) granted with TTL\(([0-9]+)s\), remaining\()"
                            r"(-?[0-9]+)(s\))", re.M)
    TTL_JSON = re.compile(r'("id":([0-9]+),"ttl":)(-?[0-9]+)(,"granted-ttl":([0-9]+))')
    TTL_FIELDS = re.compile(r'^("ID" : ([0-9]+)\n"TTL" : )(-?[0-9]+)(\n"GrantedTTL" : ([0-9]+))$',
                            re.M)

    def __init__(self):
        self.ids = []        # in order of first appearance
        self.refreshed = {}  # id -> monotonic start time of the last grant / keep-alive
        self.rules = []

    def ref(self, n):
        """Hex id of the n-th granted lease (1-based), or None."""
        return "%016x" % self.ids[n - 1] if 0 < n <= len(self.ids) else None

    def substitute(self, text):
        """Replace {LEASEn}; returns (text, first unknown reference or None)."""
        missing = []

        def rep(m):
            h = self.ref(int(m.group(1)))
            if h is None:
                missing.append(m.group(0))
                return m.group(0)
            return h
        text = LEASE_REF_RE.sub(rep, text)
        return text, (missing[0] if missing else None)

    def _register(self, lid, started):
        if lid <= 0 or lid in self.ids:
            return
        self.ids.append(lid)
        self.refreshed[lid] = started
        name = "LEASE%d" % len(self.ids)
        for text in ("%016x" % lid, "%x" % lid):
            if len(text) >= 8:
                self.rules.append((re.compile(r"(?<![0-9A-Za-z])" + re.escape(text)
                                              + r"(?![0-9A-Za-z])"), name))
        dec = re.escape(str(lid))
        # decimal in known contexts (json "ID"/"id"/"lease", fields "ID"/"Lease"),
        # anywhere else only when long enough not to hit a revision or count
        self.rules.append((re.compile(r'("(?:ID|id|lease)":)' + dec + r"(?![0-9])"), r"\g<1>" + name))
        self.rules.append((re.compile(r'^("(?:ID|Lease)" : )' + dec + "$", re.M), r"\g<1>" + name))
        if len(str(lid)) >= 8:
            self.rules.append((re.compile(r"(?<![0-9A-Za-z])" + dec + r"(?![0-9A-Za-z])"), name))

    def observe(self, argv, stdout, started):
        """Learn ids from raw output; remember keep-alive times."""
        cmd = tuple(argv[:2])
        if cmd == ("lease", "grant"):
            for rx, base in ((self.GRANTED_SIMPLE, 16), (self.GRANTED_JSON, 10),
                             (self.GRANTED_FIELDS, 10)):
                for m in rx.finditer(stdout):
                    self._register(int(m.group(1), base), started)
        elif argv and argv[0] in ("lock", "elect"):
            # the session lease shows up in the key: "<name>/<lease id %x>"
            names = [a for a in argv[1:] if not a.startswith("-")]
            if names:
                rx = re.compile("^" + re.escape(names[0]) + r"/([0-9a-f]+)$", re.M)
                for m in rx.finditer(stdout):
                    self._register(int(m.group(1), 16), started)
        elif cmd == ("lease", "keep-alive"):
            for a in argv[2:]:
                if not a.startswith("-"):
                    try:
                        lid = int(a, 16)
                    except ValueError:
                        continue
                    if lid in self.refreshed:
                        self.refreshed[lid] = started

    def _ttl_ok(self, lid, granted, remaining, now):
        since = self.refreshed.get(lid)
        if since is None:
            return False
        slack = int(now - since) + 1
        return remaining >= 0 and 0 <= granted - remaining <= slack

    def normalise_ttls(self, text, now):
        def simple(m):
            if self._ttl_ok(int(m.group(2), 16), int(m.group(3)), int(m.group(4)), now):
                return m.group(1) + "<ttl-elapsed>" + m.group(5)
            return m.group(0)

        def structured(m):
            if self._ttl_ok(int(m.group(2)), int(m.group(5)), int(m.group(3)), now):
                return m.group(1) + "<ttl-elapsed>" + m.group(4)
            return m.group(0)
        text = self.TTL_SIMPLE.sub(simple, text)
        text = self.TTL_JSON.sub(structured, text)
        text = self.TTL_FIELDS.sub(structured, text)
        return text

    def normalise_ids(self, text):
        for rx, rep in self.rules:
            text = rx.sub(rep, text)
        return text


def natural_key(s):
    return [int(t) if t.isdigit() else t for t in re.split(r"([0-9]+)", s)]


LEASE_LIST_JSON = re.compile(r'("leases":\[)([^\]]*)(\])')


def sort_lease_list(text, fmt):
    """etcd lists leases in Go map order (random per call): sort the ids."""
    if fmt == "simple":
        lines = text.split("\n")
        if lines and re.match(r"^found [0-9]+ leases$", lines[0]):
            body = [l for l in lines[1:] if l != ""]
            tail = lines[1 + len(body):]
            if all(l != "" for l in lines[1:1 + len(body)]):
                return "\n".join([lines[0]] + sorted(body, key=natural_key) + tail)
        return text
    if fmt == "json":
        def rep(m):
            items = re.findall(r"\{[^{}]*\}", m.group(2))
            return m.group(1) + ",".join(sorted(items, key=natural_key)) + m.group(3)
        return LEASE_LIST_JSON.sub(rep, text)
    if fmt == "fields":
        lines = text.split("\n")
        idx = [k for k, l in enumerate(lines) if l.startswith('"ID" : ')]
        vals = sorted((lines[k] for k in idx), key=natural_key)
        for k, v in zip(idx, vals):
            lines[k] = v
        return "\n".join(lines)
    return text


TTL_KEYS_SIMPLE = re.compile(r"(attached keys\(\[)([^\]\n]*)(\]\))")
TTL_KEYS_JSON = re.compile(r'("keys":\[)([^\]]*)(\])')


def sort_lease_keys(text, fmt):
    """etcd returns a lease's attached keys in Go map order (random per
    call): sort them (timetolive --keys)."""
    if fmt == "simple":
        return TTL_KEYS_SIMPLE.sub(
            lambda m: m.group(1) + " ".join(sorted(m.group(2).split(" "))) + m.group(3), text)
    if fmt == "json":
        return TTL_KEYS_JSON.sub(
            lambda m: m.group(1) + ",".join(sorted(m.group(2).split(","))) + m.group(3), text)
    if fmt == "fields":
        lines = text.split("\n")
        idx = [k for k, l in enumerate(lines) if l.startswith('"Key" : ')]
        vals = sorted(lines[k] for k in idx)
        for k, v in zip(idx, vals):
            lines[k] = v
        return "\n".join(lines)
    return text


def output_format(argv):
    fmt = "simple"
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in ("-w", "--write-out") and i + 1 < len(argv):
            fmt = argv[i + 1]
            i += 1
        elif a.startswith("--write-out="):
            fmt = a.split("=", 1)[1]
        elif a.startswith("-w="):
            fmt = a.split("=", 1)[1]
        elif a.startswith("-w") and len(a) > 2:
            fmt = a[2:]
        i += 1
    return fmt


def normalise_tables(text, columns, literal):
    """Rewrite chosen columns of tablewriter tables and re-render them the
    way etcdctl does (header centred, cells right-aligned) so the layout
    does not leak the original widths. Tables without a rewritten cell are
    left untouched."""
    lines = text.split("\n")
    out = []
    i = 0
    while i < len(lines):
        if not lines[i].startswith("+"):
            out.append(lines[i])
            i += 1
            continue
        j = i
        while j < len(lines) and (lines[j].startswith("+") or lines[j].startswith("|")):
            j += 1
        block = lines[i:j]
        out.extend(rerender_table(block, columns, literal))
        i = j
    return "\n".join(out)


def rerender_table(block, columns, literal):
    rows = [l for l in block if l.startswith("|")]
    if not rows:
        return block
    split = [[c.strip() for c in r.strip()[1:-1].split("|")] for r in rows]
    header = split[0]
    changed = False
    for row in split[1:]:
        for k, name in enumerate(header):
            if k < len(row):
                new = columns.get(name)
                val = row[k]
                for rx, rep in literal:
                    val = rx.sub(rep, val)
                if new is not None and val != "":
                    val = new
                if val != row[k]:
                    row[k] = val
                    changed = True
    if not changed:
        return block
    ncol = len(header)
    widths = [max(len(r[k]) if k < len(r) else 0 for r in split) for k in range(ncol)]
    border = "+" + "+".join("-" * (w + 2) for w in widths) + "+"

    def centre(s, w):
        pad = w - len(s)
        left = pad // 2
        return " " * left + s + " " * (pad - left)

    res = [border]
    res.append("|" + "|".join(" " + centre(header[k], widths[k]) + " " for k in range(ncol)) + "|")
    res.append(border)
    for r in split[1:]:
        res.append("|" + "|".join(" " + (r[k] if k < len(r) else "").rjust(widths[k]) + " "
                                  for k in range(ncol)) + "|")
    res.append(border)
    return res


# --------------------------------------------------------------------------
# running


def etcdctl_env():
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETCDCTL_")}
    env["ETCDCTL_API"] = "3"
    env["LC_ALL"] = "C"
    env["LANG"] = "C"
    return env


def fmt_seconds(x):
    return "%g" % x


def run(etcdctl, endpoint, argv, stdin, timeout, hold_stdin=False, killed_label=None):
    """Run etcdctl; after `timeout` seconds it is killed and the output so far
    is kept. The exit is then `killed_label` (an intended bound, @timeout) or
    "timeout after Ns" (the hard per-command limit). With hold_stdin the
    input is written but stdin stays open until the process ends."""
    cmd = [etcdctl, "--endpoints=" + endpoint, "--dial-timeout=3s",
           "--command-timeout=10s"] + argv
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=etcdctl_env())
    bufs = {}

    def drain(name, f):
        bufs[name] = f.read()
    threads = [threading.Thread(target=drain, args=(name, f), daemon=True)
               for name, f in (("out", p.stdout), ("err", p.stderr))]
    for t in threads:
        t.start()
    try:
        if stdin:
            p.stdin.write(stdin.encode())
            p.stdin.flush()
        if not hold_stdin:
            p.stdin.close()
    except BrokenPipeError:
        pass
    try:
        status = str(p.wait(timeout=timeout))
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        status = killed_label or "timeout after %ss" % fmt_seconds(timeout)
    try:
        p.stdin.close()
    except BrokenPipeError:
        pass
    for t in threads:
        t.join()
    return bufs.get("out", b""), bufs.get("err", b""), status


def probe_ids(etcdctl, endpoint):
    out, _, rc = run(etcdctl, endpoint, ["endpoint", "status", "-w", "json"], None, 15)
    if rc != "0":
        return None, None
    try:
        st = json.loads(out.decode())[0]["Status"]["header"]
        return st.get("member_id"), st.get("cluster_id")
    except (ValueError, LookupError, TypeError):
        return None, None


def emit_block(w, title, text):
    w("--- %s\n" % title)
    if text == "":
        return
    w(text)
    if not text.endswith("\n"):
        w("\n\\ no newline at end\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--etcdctl", default="etcdctl")
    ap.add_argument("--client-url", required=True)
    ap.add_argument("--peer-url", default="")
    ap.add_argument("--script", required=True)
    ap.add_argument("--command-timeout", type=float, default=30.0,
                    help="hard limit per etcdctl invocation (seconds)")
    ap.add_argument("--raw", action="store_true", help="do not normalise")
    ap.add_argument("--check", action="store_true", help="only parse the script")
    args = ap.parse_args()

    try:
        steps = parse_script(args.script)
    except (ScriptError, OSError) as e:
        print("run-script: %s" % e, file=sys.stderr)
        return 2
    if args.check:
        print("%d commands" % len(steps))
        return 0

    member_id, cluster_id = probe_ids(args.etcdctl, args.client_url)
    if member_id is None:
        print("run-script: warning: could not read member/cluster id via "
              "'endpoint status -w json'; relying on contextual normalisation only",
              file=sys.stderr)
    norm = Normaliser(args.client_url, args.peer_url, member_id, cluster_id)

    out = sys.stdout
    w = out.write
    w("# script: %s (%d commands)\n" % (os.path.basename(args.script), len(steps)))
    leases = Leases()
    for n, step in enumerate(steps, 1):
        if step.sleep is not None:
            w("\n### [%d] @sleep %s\n" % (n, fmt_seconds(step.sleep)))
            out.flush()
            time.sleep(step.sleep)
            continue
        prefix = ""
        if step.timeout is not None:
            prefix += "@timeout %s " % fmt_seconds(step.timeout)
        if step.hold_stdin:
            prefix += "@hold-stdin "
        w("\n### [%d] %s$ etcdctl %s\n" % (n, prefix, shlex.join(step.argv)))
        if step.stdin is not None:
            emit_block(w, "stdin", step.stdin)
        argv, missing = [], None
        for a in step.argv:
            a, miss = leases.substitute(a)
            argv.append(a)
            missing = missing or miss
        stdin = step.stdin
        if stdin is not None:
            stdin, miss = leases.substitute(stdin)
            missing = missing or miss
        if missing:
            w("--- not run: %s refers to a lease that was not granted\n" % missing)
            out.flush()
            continue
        timeout = args.command_timeout
        label = None
        if step.timeout is not None:
            timeout = step.timeout
            label = "killed after %ss (@timeout)" % fmt_seconds(step.timeout)
        started = time.monotonic()
        so, se, rc = run(args.etcdctl, args.client_url, argv, stdin, timeout,
                         step.hold_stdin, label)
        now = time.monotonic()
        so = so.decode("utf-8", "backslashreplace")
        se = se.decode("utf-8", "backslashreplace")
        leases.observe(argv, so, started)
        if not args.raw:
            fmt = output_format(argv)
            texts = []
            for text in (so, se):
                text = leases.normalise_ttls(text, now)
                text = norm.normalise(text, argv)
                text = leases.normalise_ids(text)
                if tuple(argv[:2]) == ("lease", "list"):
                    text = sort_lease_list(text, fmt)
                if tuple(argv[:2]) == ("lease", "timetolive"):
                    text = sort_lease_keys(text, fmt)
                texts.append(text)
            so, se = texts
        emit_block(w, "stdout", so)
        emit_block(w, "stderr", se)
        w("--- exit %s\n" % rc)
        out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())

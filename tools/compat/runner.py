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
"""

import argparse
import json
import os
import re
import shlex
import subprocess
import sys

HEREDOC_RE = re.compile(r"^<<([A-Za-z_][A-Za-z0-9_]*)$")

# Go time.Duration.String(), e.g. 1.387394ms, 2.1s, 1m2.5s, 850µs, 120ns
GO_DURATION = r"(?:[0-9]+(?:\.[0-9]+)?(?:ns|us|µs|μs|ms|s|m|h))+"


# --------------------------------------------------------------------------
# script parsing


class ScriptError(Exception):
    pass


def parse_script(path):
    """Return a list of (lineno, argv, stdin_text_or_None)."""
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
        stdin = None
        m = HEREDOC_RE.match(words[-1])
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
        if words and words[0] == "etcdctl":
            words = words[1:]
        if not words:
            raise ScriptError("%s:%d: empty command" % (path, lineno))
        steps.append((lineno, words, stdin))
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


def run(etcdctl, endpoint, argv, stdin, timeout):
    cmd = [etcdctl, "--endpoints=" + endpoint, "--dial-timeout=3s",
           "--command-timeout=10s"] + argv
    try:
        p = subprocess.run(cmd, input=(stdin or "").encode(), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, env=etcdctl_env(), timeout=timeout)
        return p.stdout, p.stderr, str(p.returncode)
    except subprocess.TimeoutExpired as e:
        return e.stdout or b"", e.stderr or b"", "timeout after %ss" % timeout


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
    for n, (lineno, argv, stdin) in enumerate(steps, 1):
        so, se, rc = run(args.etcdctl, args.client_url, argv, stdin, args.command_timeout)
        so = so.decode("utf-8", "backslashreplace")
        se = se.decode("utf-8", "backslashreplace")
        if not args.raw:
            so = norm.normalise(so, argv)
            se = norm.normalise(se, argv)
        w("\n### [%d] $ etcdctl %s\n" % (n, shlex.join(argv)))
        if stdin is not None:
            emit_block(w, "stdin", stdin)
        emit_block(w, "stdout", so)
        emit_block(w, "stderr", se)
        w("--- exit %s\n" % rc)
        out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())

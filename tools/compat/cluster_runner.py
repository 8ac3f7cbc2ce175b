#!/usr/bin/env python3
"""Run an etcdctl script against a 3-member cluster and print a normalised
transcript. Used by run-cluster-script.sh (which owns the server processes);
standard library only. Script syntax and transcript format are those of
runner.py (imported from it), plus these references, replaced in a command's
words / heredoc before running (the transcript shows the reference):

    {ID:m2}       hex id (as etcdctl prints it) of member m2; the ids of m0..m2
                  come from "member list -w json" before the script, the id of
                  a member added by "member add <name> ..." is taken from its
                  output ("Member <hex> added to cluster ...")
    {PEER:m2}     peer URL of m2 ({PEER:m3}: a free port nobody listens on)
    {CLIENT:m2}   client URL of m2

Every etcdctl run gets --endpoints=<all three client URLs>.

Normalisation (on top of runner.py's generic rules for timings, raft
term/index, db size, version, zap log lines):
  * each known member id (hex and decimal) -> MEMBER_<name>; the cluster id
    -> <cluster-id>; each member's URLs -> <client:NAME>, <peer:NAME> (and the
    host:port forms <client-addr:NAME>, <peer-addr:NAME>);
  * which member is leader depends on the election: "leader" / "Leader"
    fields -> <leader> and the IS LEADER column -> <is-leader>; a line
    "--- leader: ..." then records how many distinct leader ids were
    reported and on how many rows IS LEADER was true;
  * response header member_id of "member ..." commands (the answering
    endpoint is chosen by the client balancer) -> <member-id>;
  * row order that follows the (random) member ids or completion order is
    sorted: member list rows / json members, endpoint status/health rows,
    ETCD_INITIAL_CLUSTER entries of "member add". For "member list" a line
    "--- member order: ..." records whether the raw rows were in ascending
    id order (etcd sorts members by id).
"""

import argparse
import json
import os
import re
import shlex
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import runner  # noqa: E402

REF_RE = re.compile(r"\{(ID|PEER|CLIENT):([A-Za-z0-9_-]+)\}")
ADDED_RE = re.compile(r"^Member +([0-9a-f]+) added to cluster +([0-9a-f]+)", re.M)
# etcdctl prints "Member %16x <verb> in/to cluster %16x": the space padding
# depends on the random ids' hex length
PADDED_RE = re.compile(r"^Member +(\S+) (added to|updated in|removed from|promoted in) cluster +(\S+)",
                       re.M)

# runner's generic rules minus the id ones (handled here with names)
SKIP = ('"member_id"', '"leader"', '"MemberID"', '"Leader"')
GENERIC = [(rx, rep) for rx, rep in runner.Normaliser.GENERIC
           if not any(s in rx.pattern for s in SKIP)]

STATUS_COLS = {"VERSION": "<version>", "DB SIZE": "<db-size>", "RAFT TERM": "<raft-term>",
               "RAFT INDEX": "<raft-index>", "RAFT APPLIED INDEX": "<raft-index>",
               "IS LEADER": "<is-leader>"}
HEALTH_COLS = {"TOOK": "<took>"}


class Cluster:
    def __init__(self, members):
        self.client = {}   # name -> url
        self.peer = {}
        self.ids = {}      # name -> int id
        self.cluster_id = None
        for spec in members.split(","):
            name, client, peer = spec.split("=", 2)
            if client:
                self.client[name] = client
            if peer:
                self.peer[name] = peer

    def endpoints(self):
        return ",".join(self.client[n] for n in sorted(self.client))

    def substitute(self, text):
        missing = []

        def rep(m):
            kind, name = m.groups()
            table = {"ID": {n: "%x" % i for n, i in self.ids.items()},
                     "PEER": self.peer, "CLIENT": self.client}[kind]
            if name not in table:
                missing.append(m.group(0))
                return m.group(0)
            return table[name]
        return REF_RE.sub(rep, text), (missing[0] if missing else None)

    def literal_rules(self):
        rules = []
        urls = [(u, "client", n) for n, u in self.client.items()] + \
               [(u, "peer", n) for n, u in self.peer.items()]
        for url, kind, name in urls:
            rules.append((re.compile(re.escape(url) + r"(?![0-9])"), "<%s:%s>" % (kind, name)))
            hp = re.sub(r"^[a-z]+://", "", url)
            rules.append((re.compile(re.escape(hp) + r"(?![0-9])"), "<%s-addr:%s>" % (kind, name)))
        vals = [(i, "MEMBER_" + n) for n, i in self.ids.items()]
        if self.cluster_id:
            vals.append((self.cluster_id, "<cluster-id>"))
        for value, rep in vals:
            for text in (str(value), "%x" % value, "%016x" % value):
                if len(text) >= 8:
                    rules.append((re.compile(r"(?<![0-9A-Za-z])" + re.escape(text)
                                             + r"(?![0-9A-Za-z])"), rep))
        return rules


def probe(etcdctl, cl):
    out, err, rc = runner.run(etcdctl, cl.endpoints(), ["member", "list", "-w", "json"], None, 15)
    if rc != "0":
        raise SystemExit("cluster_runner: member list -w json failed: %s" % err.decode())
    d = json.loads(out.decode())
    cl.cluster_id = d["header"]["cluster_id"]
    for m in d["members"]:
        if m.get("name"):
            cl.ids[m["name"]] = m["ID"]


def split_table(text):
    """Yield ('text', line) and ('table', [rows of cells]) segments."""
    lines = text.split("\n")
    i = 0
    segs = []
    while i < len(lines):
        if not lines[i].startswith("+"):
            segs.append(("text", lines[i]))
            i += 1
            continue
        j = i
        while j < len(lines) and (lines[j].startswith("+") or lines[j].startswith("|")):
            j += 1
        rows = [[c.strip() for c in l.strip()[1:-1].split("|")] for l in lines[i:j]
                if l.startswith("|")]
        segs.append(("table", rows))
        i = j
    return segs


def render_table(rows):
    header = rows[0]
    ncol = len(header)
    widths = [max(len(r[k]) if k < len(r) else 0 for r in rows) for k in range(ncol)]
    border = "+" + "+".join("-" * (w + 2) for w in widths) + "+"

    def centre(s, w):
        pad = w - len(s)
        return " " * (pad // 2) + s + " " * (pad - pad // 2)
    res = [border, "|" + "|".join(" " + centre(header[k], widths[k]) + " "
                                  for k in range(ncol)) + "|", border]
    for r in rows[1:]:
        res.append("|" + "|".join(" " + (r[k] if k < len(r) else "").rjust(widths[k]) + " "
                                  for k in range(ncol)) + "|")
    res.append(border)
    return res


def raw_member_order(text, fmt):
    if fmt == "json":
        m = re.search(r'"members":\[(.*)\]', text)
        ids = [int(x) for x in re.findall(r'"ID":([0-9]+)', m.group(1))] if m else []
    elif fmt == "table":
        ids = []
        for kind, seg in split_table(text):
            if kind == "table":
                ids += [int(r[0], 16) for r in seg[1:] if re.match(r"^[0-9a-f]+$", r[0])]
    elif fmt == "simple":
        ids = [int(x, 16) for x in re.findall(r"^([0-9a-f]+), ", text, re.M)]
    else:
        return None
    if len(ids) < 2:
        return None
    return "ascending by id" if ids == sorted(ids) else "NOT ascending by id"


def normalise(text, argv, cl, notes):
    cmd = tuple(argv[:2])
    fmt = runner.output_format(argv)
    literal = cl.literal_rules()
    member_cmd = bool(argv) and argv[0] == "member"
    for rx, rep in GENERIC:
        text = rx.sub(rep, text)
    # leader fields
    leaders = set(re.findall(r'"leader":([0-9]+)', text)) | \
        set(re.findall(r'^"Leader" : ([0-9]+)$', text, re.M))
    text = re.sub(r'"leader":[1-9][0-9]*', '"leader":<leader>', text)
    text = re.sub(r'^"Leader" : [1-9][0-9]*$', '"Leader" : <leader>', text, flags=re.M)
    if member_cmd:
        text = re.sub(r'"member_id":[1-9][0-9]*', '"member_id":<member-id>', text)
        text = re.sub(r'^"MemberID" : [1-9][0-9]*$', '"MemberID" : <member-id>', text, flags=re.M)
    for rx, rep in literal:
        text = rx.sub(rep, text)
    text = PADDED_RE.sub(r"Member \1 \2 cluster \3", text)
    true_leaders = None
    if fmt == "table" and cmd in (("endpoint", "status"), ("endpoint", "health"),
                                  ("member", "list")):
        cols = {("endpoint", "status"): STATUS_COLS,
                ("endpoint", "health"): HEALTH_COLS}.get(cmd, {})
        out = []
        for kind, seg in split_table(text):
            if kind == "text":
                out.append(seg)
                continue
            header, body = seg[0], seg[1:]
            for r in body:
                for k, name in enumerate(header):
                    if k < len(r) and name == "IS LEADER":
                        true_leaders = (true_leaders or 0) + (r[k] == "true")
                    if k < len(r) and name in cols and r[k] != "":
                        r[k] = cols[name]
            body.sort(key=lambda r: runner.natural_key("|".join(r)))
            out.extend(render_table([header] + body))
        text = "\n".join(out)
    elif fmt == "simple" and cmd in (("endpoint", "status"), ("endpoint", "health"),
                                     ("member", "list")):
        lines = text.split("\n")
        body = [l for l in lines if l != ""]
        if cmd == ("endpoint", "status"):
            new = []
            for l in body:
                p = l.split(", ")
                if len(p) >= 9:
                    true_leaders = (true_leaders or 0) + (p[4] == "true")
                    for idx, rep in {2: "<version>", 3: "<db-size>", 4: "<is-leader>",
                                     6: "<raft-term>", 7: "<raft-index>",
                                     8: "<raft-index>"}.items():
                        p[idx] = rep
                new.append(", ".join(p))
            body = new
        body.sort(key=runner.natural_key)
        text = "\n".join(body) + ("\n" if text.endswith("\n") else "")
    if cmd == ("member", "list") and fmt == "json":
        def rep(m):
            items = re.findall(r"\{[^{}]*\}", m.group(2))
            return m.group(1) + ",".join(sorted(items, key=runner.natural_key)) + m.group(3)
        text = re.sub(r'("members":\[)(.*)(\])', rep, text)
    if cmd == ("member", "add") or (member_cmd and fmt == "simple"):
        text = re.sub(r'^(ETCD_INITIAL_CLUSTER=")([^"]*)(")',
                      lambda m: m.group(1) + ",".join(sorted(m.group(2).split(","))) + m.group(3),
                      text, flags=re.M)
    if leaders or true_leaders is not None:
        parts = []
        if leaders:
            parts.append("%d distinct leader id(s) reported" % len(leaders))
        if true_leaders is not None:
            parts.append("IS LEADER true on %d row(s)" % true_leaders)
        notes.append("leader: " + ", ".join(parts))
    return text


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--etcdctl", default="etcdctl")
    ap.add_argument("--members", required=True, help="name=client=peer,... ")
    ap.add_argument("--script", required=True)
    ap.add_argument("--command-timeout", type=float, default=30.0)
    ap.add_argument("--raw", action="store_true")
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    try:
        steps = runner.parse_script(args.script)
    except (runner.ScriptError, OSError) as e:
        print("run-cluster-script: %s" % e, file=sys.stderr)
        return 2
    if args.check:
        print("%d commands" % len(steps))
        return 0
    cl = Cluster(args.members)
    probe(args.etcdctl, cl)
    w = sys.stdout.write
    w("# script: %s (%d commands, members %s)\n"
      % (os.path.basename(args.script), len(steps), " ".join(sorted(cl.ids))))
    for n, step in enumerate(steps, 1):
        if step.sleep is not None:
            w("\n### [%d] @sleep %s\n" % (n, runner.fmt_seconds(step.sleep)))
            sys.stdout.flush()
            time.sleep(step.sleep)
            continue
        prefix = "@timeout %s " % runner.fmt_seconds(step.timeout) if step.timeout else ""
        w("\n### [%d] %s$ etcdctl %s\n" % (n, prefix, shlex.join(step.argv)))
        if step.stdin is not None:
            runner.emit_block(w, "stdin", step.stdin)
        argv, missing = [], None
        for a in step.argv:
            a, miss = cl.substitute(a)
            argv.append(a)
            missing = missing or miss
        stdin = step.stdin
        if stdin is not None:
            stdin, miss = cl.substitute(stdin)
            missing = missing or miss
        if missing:
            w("--- not run: unknown reference %s\n" % missing)
            continue
        timeout = step.timeout or args.command_timeout
        label = "killed after %ss (@timeout)" % runner.fmt_seconds(step.timeout) \
            if step.timeout else None
        so, se, rc = runner.run(args.etcdctl, cl.endpoints(), argv, stdin, timeout,
                                step.hold_stdin, label)
        so = so.decode("utf-8", "backslashreplace")
        se = se.decode("utf-8", "backslashreplace")
        if tuple(argv[:2]) == ("member", "add"):
            m = ADDED_RE.search(so)
            names = [a for a in argv[2:] if not a.startswith("-")]
            if m and names:
                cl.ids[names[0]] = int(m.group(1), 16)
        notes = []
        if not args.raw:
            if tuple(argv[:2]) == ("member", "list"):
                order = raw_member_order(so, runner.output_format(argv))
                if order:
                    notes.append("member order: " + order)
            so = normalise(so, argv, cl, notes)
            se = normalise(se, argv, cl, [])
        runner.emit_block(w, "stdout", so)
        runner.emit_block(w, "stderr", se)
        for note in notes:
            w("--- %s\n" % note)
        w("--- exit %s\n" % rc)
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())

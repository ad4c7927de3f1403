#!/usr/bin/python3
"""check_corpus.py — run `tinylcm check` over the graph-file corpus.

usage: check_corpus.py TINYLCM CORPUS_DIR

CORPUS_DIR/bad/*.yaml must each be rejected: exit status 1, every
`# expect: TEXT` line of the file's leading comments found in stderr, the
file named in stderr, a closing `tinylcm: FILE: N problem(s), not started`
line whose N matches the problems printed, and no sanitizer output. An
expectation that starts with `:LINE:COL:` must match right after the file
name on one line (so the path prefix does not matter but the position
does); each file needs one such expectation unless a line
`# position: not pinned (WHY)` says why not. A file whose comments hold `# xfail: REASON` documents a known
engine bug: it may fail these checks (counted as xfail, not as a failure)
but must not pass them all (XPASS: remove the xfail line).

CORPUS_DIR/good/*.yaml must each be accepted: exit 0 and `FILE: ok (` on
stdout.

A few built-in cases follow: a 0-byte file, a missing file and the
`--set NODE.PARAM=VALUE` overrides (whose problems name `--set ...` instead
of a file position).

Prints one line per failure, then `N passed, M failed` (and the xfail
count); exits 1 on any failure. TLCM_CORPUS_COUNT=25 is set and
TLCM_TEST_SURELY_UNSET removed from the environment for every run.
"""
import glob
import os
import re
import subprocess
import sys
import tempfile

TIMEOUT = 30
POS = re.compile(r"^:\d+:\d+: ")
SUMMARY = re.compile(r"^tinylcm: (.*): (\d+) problems?, not started$")
SANITIZER = ("Sanitizer", "runtime error")


class Result:
    def __init__(self):
        self.passed = 0
        self.failed = 0
        self.xfailed = 0

    def ok(self):
        self.passed += 1

    def fail(self, name, why, out=None):
        self.failed += 1
        print(f"FAIL {name}: {why}")
        if out is not None:
            for line in out.rstrip("\n").splitlines()[:20]:
                print(f"    | {line}")


def run(binary, args, env):
    """(status, stdout, stderr); status is None on a hang."""
    try:
        p = subprocess.run([binary] + args, capture_output=True, text=True,
                           errors="replace", timeout=TIMEOUT, env=env)
    except subprocess.TimeoutExpired as e:
        def text(b):
            return (b or b"").decode("utf-8", "replace") \
                if isinstance(b, bytes) else (b or "")
        return None, text(e.stdout), text(e.stderr)
    return p.returncode, p.stdout, p.stderr


def header(path):
    """The `# expect:` texts, the `# xfail:` reason (or None) and whether a
    `# position: not pinned` line excuses the file from pinning a position,
    from the leading comment block of path."""
    expects, xfail, unpinned = [], None, False
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line.startswith("#"):
                break
            m = re.match(r"^# expect: (.+)$", line)
            if m:
                expects.append(m.group(1))
            m = re.match(r"^# xfail: (.+)$", line)
            if m:
                xfail = m.group(1)
            if line.startswith("# position: not pinned"):
                unpinned = True
    return expects, xfail, unpinned


def sanitizer_problem(*texts):
    for t in texts:
        for s in SANITIZER:
            if s in t:
                return f"sanitizer output ({s!r})"
    return None


def check_rejected(status, out, err, path, expects, label):
    """Problems (a list of strings) with a rejected file's result; path is
    the file as given on the command line (None for --set-only cases)."""
    probs = []
    if status is None:
        return [f"no exit within {TIMEOUT} s"]
    s = sanitizer_problem(out, err)
    if s:
        probs.append(s)
    if status is not None and status < 0:
        probs.append(f"killed by signal {-status}")
    elif status != 1:
        probs.append(f"exit status {status}, expected 1")
    lines = err.splitlines()
    for e in expects:
        if POS.match(e):
            # ":L:C: msg" right after the file name, whatever its prefix
            base = os.path.basename(path) if path else ""
            if not any(i >= 0 and line[:i].endswith(base)
                       for line in lines for i in [line.find(e)]):
                probs.append(f"no line with {e!r} after the file name")
        elif e not in err:
            probs.append(f"stderr lacks {e!r}")
    if path is not None:
        if path not in err:
            probs.append(f"stderr does not name {path}")
        m = SUMMARY.match(lines[-1]) if lines else None
        if not m:
            probs.append("last stderr line is not 'tinylcm: FILE: N "
                         "problems, not started'")
        else:
            diags = [l for l in lines[:-1] if not l.startswith("(stopped")]
            if int(m.group(2)) != len(diags):
                probs.append(f"summary says {m.group(2)} problems, "
                             f"{len(diags)} printed")
            stray = [l for l in diags if not (l.startswith(path + ":")
                                              or l.startswith("--set "))]
            if stray:
                probs.append(f"problem line not starting with the file "
                             f"name or --set: {stray[0]!r}")
    return probs


def main():
    if len(sys.argv) != 3:
        sys.stderr.write(__doc__.split("\n\n")[1] + "\n")
        return 2
    binary, corpus = sys.argv[1], sys.argv[2]
    env = dict(os.environ)
    env.pop("TLCM_TEST_SURELY_UNSET", None)
    env["TLCM_CORPUS_COUNT"] = "25"
    r = Result()

    bad = sorted(glob.glob(os.path.join(corpus, "bad", "*.yaml")))
    good = sorted(glob.glob(os.path.join(corpus, "good", "*.yaml")))
    if len(bad) < 25:
        r.fail("corpus", f"only {len(bad)} bad files (want at least 25)")
    if len(good) < 5:
        r.fail("corpus", f"only {len(good)} good files (want at least 5)")

    for path in bad:
        name = "bad/" + os.path.basename(path)
        expects, xfail, unpinned = header(path)
        if not expects:
            r.fail(name, "no '# expect:' line in the leading comments")
            continue
        if not any(POS.match(e) for e in expects) and not unpinned:
            r.fail(name, "no '# expect: :LINE:COL: ...' line (or "
                   "'# position: not pinned ...')")
            continue
        status, out, err = run(binary, ["check", path], env)
        probs = check_rejected(status, out, err, path, expects, name)
        if xfail:
            if probs:
                r.xfailed += 1
                print(f"xfail {name}: {xfail}")
            else:
                r.fail(name, "XPASS: passes now; remove its '# xfail:' "
                       "line")
        elif probs:
            r.fail(name, "; ".join(probs), err)
        else:
            r.ok()

    for path in good:
        name = "good/" + os.path.basename(path)
        status, out, err = run(binary, ["check", path], env)
        probs = []
        if status != 0:
            probs.append(f"exit status {status}, expected 0")
        if f"{path}: ok (" not in out:
            probs.append("no 'FILE: ok (' on stdout")
        s = sanitizer_problem(out, err)
        if s:
            probs.append(s)
        if probs:
            r.fail(name, "; ".join(probs), err)
        else:
            r.ok()

    with tempfile.TemporaryDirectory(prefix="tlcm-corpus-") as tmp:
        builtin_cases(binary, env, tmp, r)

    extra = f", {r.xfailed} xfail (known engine bugs)" if r.xfailed else ""
    print(f"{r.passed} passed, {r.failed} failed{extra}")
    return 1 if r.failed else 0


def builtin_cases(binary, env, tmp, r):
    # a truly empty file (the corpus one has to hold its # expect: line)
    empty = os.path.join(tmp, "empty.yaml")
    open(empty, "w").close()
    status, out, err = run(binary, ["check", empty], env)
    probs = check_rejected(status, out, err, empty,
                           [":1:1: the file is empty"], "0-byte file")
    (r.fail("builtin/0-byte file", "; ".join(probs), err) if probs
     else r.ok())

    missing = os.path.join(tmp, "no-such-file.yaml")
    status, out, err = run(binary, ["check", missing], env)
    probs = check_rejected(status, out, err, missing,
                           [f"{missing}: cannot open: No such file or "
                            "directory"], "missing file")
    (r.fail("builtin/missing file", "; ".join(probs), err) if probs
     else r.ok())

    base = os.path.join(tmp, "base.yaml")
    with open(base, "w") as f:
        f.write("nodes:\n"
                "  src: { type: gen, params: { count: 10 } }\n"
                "  out: { type: sink }\n"
                "edges:\n"
                "  - { from: src.out, to: out.in }\n")

    # (arguments, expected status, expected stderr texts)
    cases = [
        (["--set", "nosuch.count=1"], 1,
         ["--set nosuch.count=1: no node 'nosuch' in the graph"]),
        (["--set", "src.nosuch=1"], 1,
         ["--set src.nosuch=1: node 'src' (type gen) has no parameter "
          "'nosuch'\n"]),
        (["--set", "src.cont=1"], 1,
         ["--set src.cont=1: node 'src' (type gen) has no parameter "
          "'cont' (did you mean 'count'?)"]),
        (["--set", "src.count=abc"], 1,
         ["--set src.count=abc: src.count (int): 'abc' is not an "
          "integer"]),
        (["--set", "src.burst=0"], 1,
         ["--set src.burst=0: src.burst (int): 0 is outside the allowed "
          "range 1..1000000"]),
        (["--set", "out.verify=maybe"], 1,
         ["--set out.verify=maybe: out.verify (bool): 'maybe' is not a "
          "boolean (true or false)"]),
        (["--set", "garbage"], 1,
         ["--set garbage: expected NODE.PARAM=VALUE"]),
        (["--set", ".count=1"], 1,
         ["--set .count=1: expected NODE.PARAM=VALUE"]),
        (["--set", "src.=1"], 1, ["--set src.=1: expected NODE.PARAM=VALUE"]),
        # every bad override is reported, not just the first
        (["--set", "garbage", "--set", "nosuch.x=1"], 1,
         ["--set garbage: expected NODE.PARAM=VALUE",
          "--set nosuch.x=1: no node 'nosuch' in the graph",
          ": 2 problems, not started"]),
        (["--set", "src.count=5"], 0, []),
        (["--set=src.count=5", "--set", "out.expect=5"], 0, []),
        (["--set"], 2, ["tinylcm check: --set needs NODE.PARAM=VALUE"]),
    ]
    for args, want, expects in cases:
        name = "builtin/check base.yaml " + " ".join(args)
        status, out, err = run(binary, ["check", base] + args, env)
        if want == 1:
            probs = check_rejected(status, out, err, base, expects, name)
        else:
            probs = []
            if status != want:
                probs.append(f"exit status {status}, expected {want}")
            for e in expects:
                if e not in err:
                    probs.append(f"stderr lacks {e!r}")
            if want == 0 and f"{base}: ok (" not in out:
                probs.append("no 'FILE: ok (' on stdout")
            s = sanitizer_problem(out, err)
            if s:
                probs.append(s)
        (r.fail(name, "; ".join(probs), err) if probs else r.ok())

    # a --set problem is reported along with the file's own problems
    both = os.path.join(tmp, "both.yaml")
    with open(both, "w") as f:
        f.write("nodes:\n"
                "  src: { type: gen, params: { count: fast } }\n")
    status, out, err = run(binary, ["check", both, "--set", "src.seed=x"],
                           env)
    probs = check_rejected(status, out, err, both,
                           [":2:31: src.count (int): 'fast' is not an "
                            "integer",
                            "--set src.seed=x: src.seed (int): 'x' is not "
                            "an integer",
                            "both.yaml: 2 problems, not started"],
                           "file and --set")
    (r.fail("builtin/file and --set problems", "; ".join(probs), err)
     if probs else r.ok())


if __name__ == "__main__":
    sys.exit(main())

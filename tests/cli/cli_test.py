#!/usr/bin/python3
"""cli_test.py — exit statuses and outputs of the tinylcm commands.

usage: cli_test.py TINYLCM SOURCE_DIR

SOURCE_DIR is the repository root (for graphs/demo.yaml). Small graphs are
written to a temporary directory. Exit status: 0 success, 1 the graph or
the run failed, 2 usage error (engine/cli/main.c). Every command runs with
a 30 s timeout, a guard against hangs rather than a timing assertion.

Not covered: masking of `secret` parameters in `dot` and `nodes` output —
none of the built-in node types (gen, sink, tee, rate) has a secret
parameter, so there is nothing to mask yet.

Prints one line per failure, then `N passed, M failed`; exits 1 on any
failure.
"""
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

TIMEOUT = 30
SANITIZER = ("Sanitizer", "runtime error")

# introspection off: ctest runs tests in parallel, and a second graph on
# the default port would warn on stderr (tested in introspect_endpoint)
SMALL = """graph: small
settings: { introspect: 'off' }
nodes:
  src: { type: gen, params: { count: 1000 } }
  out: { type: sink, params: { expect: 1000 } }
edges:
  - { from: src.out, to: out.in }
"""

SHORT = """graph: short
nodes:
  src: { type: gen, params: { count: 100 } }
  out: { type: sink, params: { expect: 101 } }
edges:
  - { from: src.out, to: out.in }
"""

ENDLESS = """graph: endless
nodes:
  src: { type: gen, params: { count: 0, rate_hz: 1000 } }
  out: { type: sink }
edges:
  - { from: src.out, to: out.in }
"""


class Tests:
    def __init__(self, binary):
        self.binary = binary
        self.passed = 0
        self.failed = 0

    def run(self, args, **kw):
        """(status, stdout, stderr); status None on timeout."""
        try:
            p = subprocess.run([self.binary] + args, capture_output=True,
                               text=True, errors="replace", timeout=TIMEOUT,
                               **kw)
        except subprocess.TimeoutExpired:
            return None, "", ""
        return p.returncode, p.stdout, p.stderr

    def case(self, name, args, status, stdout=(), stderr=(), stdout_re=(),
             no_stdout=False, no_stderr=False, check=None):
        """Run tinylcm ARGS and compare: status, texts that must appear in
        stdout / stderr, regexes (re.M) stdout must match, empty streams,
        and an optional check(out, err) returning a problem or None."""
        st, out, err = self.run(args)
        probs = []
        if st is None:
            probs.append(f"no exit within {TIMEOUT} s")
        elif st != status:
            probs.append(f"exit status {st}, expected {status}")
        for t in stdout:
            if t not in out:
                probs.append(f"stdout lacks {t!r}")
        for t in stderr:
            if t not in err:
                probs.append(f"stderr lacks {t!r}")
        for rx in stdout_re:
            if not re.search(rx, out, re.M):
                probs.append(f"stdout does not match {rx!r}")
        if no_stdout and out:
            probs.append("unexpected stdout")
        if no_stderr and err:
            probs.append("unexpected stderr")
        for s in SANITIZER:
            if s in out or s in err:
                probs.append(f"sanitizer output ({s!r})")
        if check and st is not None:
            p = check(out, err)
            if p:
                probs.append(p)
        self.result(name, probs, out, err)

    def result(self, name, probs, out="", err=""):
        if not probs:
            self.passed += 1
            return
        self.failed += 1
        print(f"FAIL {name}: {'; '.join(probs)}")
        for label, text in (("stdout", out), ("stderr", err)):
            for line in text.rstrip("\n").splitlines()[:15]:
                print(f"    {label}| {line}")


def reason_names_node(node):
    """The run failed with one `tinylcm: graph ... failed: ...` line that
    names node."""
    def check(out, err):
        lines = [l for l in err.splitlines() if l.startswith("tinylcm: ")]
        if len(lines) != 1:
            return f"{len(lines)} 'tinylcm: ' reason lines, expected 1"
        if f"'{node}'" not in lines[0] or "failed" not in lines[0]:
            return f"reason {lines[0]!r} does not name node '{node}'"
        return None
    return check


def sigint_drains(t, graph):
    """SIGINT after the graph logged 'running': exit 0, the sink's summary
    ('received') logged while draining."""
    name = "run endless graph, SIGINT"
    p = subprocess.Popen([t.binary, "run", graph], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, errors="replace")
    err_lines = []
    probs = []
    deadline = time.monotonic() + TIMEOUT
    try:
        # the log line "... running FILE (...)" comes first, on stderr
        while time.monotonic() < deadline:
            line = p.stderr.readline()
            if not line:
                break
            err_lines.append(line)
            if " running " in line:
                break
        if not any(" running " in l for l in err_lines):
            probs.append("no 'running' log line before exit/timeout")
            p.kill()
        else:
            time.sleep(0.2)  # let some messages flow
            p.send_signal(signal.SIGINT)
        try:
            out, rest = p.communicate(timeout=max(1, deadline -
                                                  time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            out, rest = p.communicate()
            probs.append(f"no exit within {TIMEOUT} s of SIGINT")
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    err = "".join(err_lines) + rest
    if not probs and p.returncode != 0:
        probs.append(f"exit status {p.returncode}, expected 0")
    if not re.search(r"\[out\] received \d+ messages", err):
        probs.append("no '[out] received N messages' line (not drained?)")
    for s in SANITIZER:
        if s in err:
            probs.append(f"sanitizer output ({s!r})")
    t.result(name, probs, out, err)


def main():
    if len(sys.argv) != 3:
        sys.stderr.write("usage: cli_test.py TINYLCM SOURCE_DIR\n")
        return 2
    t = Tests(sys.argv[1])
    src = sys.argv[2]
    demo = os.path.join(src, "graphs", "demo.yaml")
    version_re = r"^tinylcm \d+\.\d+\.\d+"
    commands = ["run", "check", "dot", "nodes", "version", "help"]

    # -- usage, help, version
    t.case("no arguments", [], 2, stderr=["usage: tinylcm", "Commands:"],
           no_stdout=True)
    for args in (["--help"], ["-h"], ["help"]):
        t.case(" ".join(args), args, 0,
               stdout=["usage: tinylcm", "Commands:"] + commands)
    t.case("help run", ["help", "run"], 0,
           stdout=["usage: tinylcm run FILE", "--duration", "--set"])
    t.case("run --help", ["run", "--help"], 0,
           stdout=["usage: tinylcm run FILE"])
    t.case("help nosuch", ["help", "nosuch"], 2,
           stderr=["tinylcm: no command 'nosuch'"], no_stdout=True)
    t.case("unknown command", ["frobnicate"], 2,
           stderr=["tinylcm: unknown command 'frobnicate'"], no_stdout=True)
    for args in (["version"], ["--version"], ["-V"]):
        t.case(" ".join(args), args, 0, stdout_re=[version_re + r"\n\Z"],
               no_stderr=True)
    t.case("version extra", ["version", "extra"], 2,
           stderr=["takes no arguments"])

    # -- nodes
    t.case("nodes", ["nodes"], 0,
           stdout_re=[rf"^{n}\s+\S" for n in ("gen", "sink", "tee", "rate")])
    t.case("nodes gen", ["nodes", "gen"], 0,
           stdout_re=[r"^gen — ",
                      r"^  control\s+CTRL\s",
                      r"^  out\s+BLOB\s",
                      r"^  rate_hz\s+float\s+default '0', range 0\.\.1e\+09"
                      r", run-time$",
                      r"^  count\s+int\s+default '0', range 0\.\.1e\+15$",
                      r"^  payload\s+size\s+default '64', range "
                      r"0\.\.1\.04858e\+06$",
                      r"^  pattern\s+enum\s+default 'seq', one of "
                      r"fixed\|seq\|random$"])
    t.case("nodes sink", ["nodes", "sink"], 0,
           stdout_re=[r"^  in\s+\*\s", r"^outputs:\n  \(none\)$",
                      r"^  verify\s+bool\s+default 'true'$"])
    t.case("nodes gne", ["nodes", "gne"], 1,
           stderr=["tinylcm nodes: no node type 'gne' (did you mean "
                   "'gen'?)"], no_stdout=True)
    t.case("nodes gen sink", ["nodes", "gen", "sink"], 2,
           stderr=["one type at a time"])

    with tempfile.TemporaryDirectory(prefix="tlcm-cli-") as tmp:
        def graph(name, text):
            path = os.path.join(tmp, name)
            with open(path, "w") as f:
                f.write(text)
            return path
        small = graph("small.yaml", SMALL)
        short = graph("short.yaml", SHORT)
        endless = graph("endless.yaml", ENDLESS)
        missing = os.path.join(tmp, "missing.yaml")

        # -- usage errors of run/check/dot
        t.case("check without file", ["check"], 2,
               stderr=["tinylcm check: which graph file?"], no_stdout=True)
        t.case("check two files", ["check", small, short], 2,
               stderr=["tinylcm check: one graph file at a time"],
               no_stdout=True)
        t.case("run --bogus", ["run", "--bogus", small], 2,
               stderr=["tinylcm run: unknown option --bogus"])
        t.case("run --duration -1", ["run", "--duration", "-1", small], 2,
               stderr=["tinylcm run: --duration wants seconds > 0, got "
                       "'-1'"])
        t.case("run --duration abc", ["run", "--duration", "abc", small], 2,
               stderr=["--duration wants seconds > 0, got 'abc'"])
        t.case("run --log-level loud", ["run", "--log-level", "loud", small],
               2, stderr=["--log-level is error, warn, info or debug"])
        t.case("check --duration", ["check", "--duration", "1", small], 2,
               stderr=["tinylcm check: unknown option --duration"])
        t.case("dot without file", ["dot"], 2,
               stderr=["tinylcm dot: which graph file?"])

        # -- run
        t.case("run missing file", ["run", missing], 1,
               stderr=[f"{missing}: cannot open: No such file or directory",
                       f"tinylcm: {missing}: 1 problem, not started"],
               no_stdout=True)
        t.case("run small graph", ["run", small], 0,
               stderr=["running", "[out] received 1000 messages",
                       "finished in"],
               check=lambda o, e: "ERROR" in e and "ERROR in the log")
        t.case("run --quiet small graph", ["run", "--quiet", small], 0,
               no_stderr=True)
        t.case("run --set to a failing expectation",
               ["run", "--quiet", small, "--set", "out.expect=999"], 1,
               check=reason_names_node("out"))
        t.case("run sink short of its expectation", ["run", short], 1,
               stderr=["expected 101 intact messages in order, got 100"],
               check=reason_names_node("out"))
        t0 = time.monotonic()
        t.case("run --duration 0.5 endless graph",
               ["run", "--duration", "0.5", endless], 0,
               stderr=["running", "[out] received", "finished in"])
        if time.monotonic() - t0 > 10:
            print(f"note: --duration 0.5 took "
                  f"{time.monotonic() - t0:.1f} s")
        sigint_drains(t, endless)

        # -- check and dot
        t.case("check small graph", ["check", small], 0,
               stdout=[f"{small}: ok (graph 'small': 2 nodes, 1 edges)"],
               no_stderr=True)
        t.case("dot demo", ["dot", demo], 0,
               stdout_re=[r"\Adigraph ", r'^  "scenario" -> "features" ',
                          r"\}\n\Z"],
               no_stderr=True)
        t.case("dot with --set", ["dot", small, "--set", "src.count=7"], 0,
               stdout=["count = 7"])
        t.case("dot of a bad graph", ["dot", small, "--set", "x.y=1"], 1,
               stderr=["--set x.y=1: no node 'x' in the graph"],
               no_stdout=True)

    print(f"{t.passed} passed, {t.failed} failed")
    return 1 if t.failed else 0


if __name__ == "__main__":
    sys.exit(main())

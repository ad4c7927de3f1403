#!/usr/bin/python3
"""discovery_test.py — satellites find cores over mDNS, or fall back.

Two hosts (network namespaces on a veth pair with multicast on), each
with its own dbus-daemon and avahi-daemon (netns.Host.start_mdns). The
core host runs a graph of three `discovery.announce` nodes; on the
satellite host `tinylcm discover` must print exactly those three
services — names, host name, the core's address on the test subnet,
ports, TXT records, URLs — sorted by prio then name, with --wait too
(no duplicates). Then: the core's avahi-daemon killed and started again,
the announcer publishes again by itself; the announcer stopped, the
satellite gets the static fallback with the reason; the satellite's
daemon killed, the fallback says Avahi is unavailable; required: true
without a daemon refuses to start; bad arguments and TXT records are
refused. And the shipped graphs: core.yaml announces itself, and
satellite.yaml with SATELLITE_DISCOVER=true finds it and delivers its
readings. Every daemon started is killed by PID at the end.

usage: discovery_test.py TINYLCM
Exit 77 (skip) without root / namespaces / avahi-daemon, unless CI=true.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import netns  # noqa: E402

failures = checks = 0
STATIC = "tcp://10.77.200.9:8471"

GRAPH = """graph: announce
nodes:
  a:
    type: discovery.announce
    params: {name: core-a, port: 8471, prio: 7, id: fleet-a}
  b:
    type: discovery.announce
    params: {name: core-b, port: 8472, prio: 5, id: fleet-b, tls: true,
             path: /api/v1, txt: [zone=lab, "note=two words"]}
  c:
    type: discovery.announce
    params: {name: core-c, port: 8473, prio: 5}
"""


def check(cond, what):
    global failures, checks
    checks += 1
    print("%-4s %s" % ("ok" if cond else "FAIL", what), flush=True)
    if not cond:
        failures += 1


def discover(host, tinylcm, *args):
    r = host.run([tinylcm, "discover"] + list(args), timeout=120)
    lines = []
    for l in r.stdout.splitlines():
        try:
            lines.append(json.loads(l))
        except ValueError:
            lines.append({"unparsable": l})
    return r.returncode, lines, r.stderr


def wait_log(proc_err_path, text, timeout=30):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with open(proc_err_path) as f:
            if text in f.read():
                return True
        time.sleep(0.1)
    return False


def shipped_graphs(tinylcm, core, sat, tmp):
    """graphs/core.yaml announces itself; graphs/satellite.yaml with
    SATELLITE_DISCOVER=true finds it (its static core, the default
    127.0.0.1, has nothing listening on the satellite's host) and delivers
    every reading once."""
    src = os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))
    count, report = 5, os.path.join(tmp, "shipped-report.json")
    log_path = os.path.join(tmp, "shipped-core.log")
    env = dict(os.environ, CORE_STORE=os.path.join(tmp, "core-store"),
               CORE_SYNC="batch", CORE_LISTEN="http://127.0.0.1:0",
               CORE_LINK_LISTEN="tcp://0.0.0.0:8471", CORE_LINK_PORT="8471",
               CORE_LINK_REPORT=report)
    with open(log_path, "w") as log:
        cp = core.popen([tinylcm, "run", os.path.join(src, "graphs",
                                                      "core.yaml"),
                         "--headless"], stdout=subprocess.DEVNULL,
                        stderr=log, env=env)
    check(wait_log(log_path, "announcing"), "core.yaml announces its link")
    env = dict(os.environ, SATELLITE_DISCOVER="true", SATELLITE_ID="sat-m",
               SATELLITE_COUNT=str(count),
               SATELLITE_STORE=os.path.join(tmp, "sat-store"))
    env.pop("SATELLITE_CORES", None)
    r = sat.run([tinylcm, "run", os.path.join(src, "graphs",
                                              "satellite.yaml"),
                 "--headless", "--set", "sensors.interval=100ms", "--set",
                 "out.discover_timeout=5s", "--set", "out.linger=60s"],
                timeout=120, env=env)
    url = "tcp://%s:8471" % core.addr(sat)
    check(r.returncode == 0 and "first core %s (2 in all)" % url
          in r.stderr, "satellite.yaml discovers core.yaml at %s and "
          "finishes: %s" % (url, r.stderr.strip()[-600:]))
    cp.send_signal(signal.SIGTERM)
    check(cp.wait(timeout=60) == 0, "core.yaml stops cleanly")
    try:
        with open(report) as f:
            got = json.load(f)["satellites"].get("sat-m")
    except (OSError, ValueError) as e:
        got = "report %s: %s" % (report, e)
    check(isinstance(got, dict) and got.get("count") == count and
          got.get("replays") == 0, "the core recorded the %d readings, "
          "none twice: %s" % (count, got))


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    tinylcm = os.path.abspath(sys.argv[1])
    netns.require_netns()
    for tool in ("avahi-daemon", "dbus-daemon", "nsenter", "unshare"):
        if not shutil.which(tool) and not os.path.exists("/usr/sbin/" +
                                                         tool):
            netns.skip("%s is not installed (tools/install-deps)" % tool)

    tmp = tempfile.mkdtemp(prefix="tlcm-disc-")
    graph = os.path.join(tmp, "announce.yaml")
    with open(graph, "w") as f:
        f.write(GRAPH)
    daemons = []
    with netns.Net("disc") as net:
        core, sat = net.host("core"), net.host("sat")
        net.link(core, sat)
        for h in (core, sat):
            pids = h.start_mdns()
            daemons += list(pids)
            check(not any(netns.pid_gone(p) for p in pids),
                  "%s: dbus-daemon %d and avahi-daemon %d run" % ((h.name,)
                                                                  + pids))
        err_path = os.path.join(tmp, "announce.err")
        err = open(err_path, "w")
        ann = core.popen([tinylcm, "run", graph, "--headless"],
                         stdout=subprocess.DEVNULL, stderr=err)
        ok = wait_log(err_path, "announcing 'core-c'")
        check(ok, "the core's three nodes announce")

        addr = core.addr(sat)
        hostname = core.ns[-60:] + ".local"
        want = [
            {"name": "core-b", "host": hostname, "address": addr,
             "port": 8472, "url": "tls+tcp://%s:8472" % addr, "prio": 5,
             "tls": True, "id": "fleet-b", "path": "/api/v1",
             "txt": {"prio": "5", "id": "fleet-b", "tls": "1",
                     "path": "/api/v1", "zone": "lab",
                     "note": "two words"}, "source": "mdns"},
            {"name": "core-c", "host": hostname, "address": addr,
             "port": 8473, "url": "tcp://%s:8473" % addr, "prio": 5,
             "tls": False, "id": "", "path": "", "txt": {"prio": "5"},
             "source": "mdns"},
            {"name": "core-a", "host": hostname, "address": addr,
             "port": 8471, "url": "tcp://%s:8471" % addr, "prio": 7,
             "tls": False, "id": "fleet-a", "path": "",
             "txt": {"prio": "7", "id": "fleet-a"}, "source": "mdns"},
        ]
        # services can take a moment to reach the other cache
        got = None
        for _ in range(10):
            rc, got, e = discover(sat, tinylcm, "--timeout", "5",
                                  "--static", STATIC)
            if len(got) >= 3:
                break
        check(rc == 0 and got == want, "discover finds exactly the three, "
              "sorted by prio then name:\n  %s\n  stderr: %s"
              % ("\n  ".join(json.dumps(g) for g in got), e.strip()))
        rc, got, e = discover(sat, tinylcm, "--timeout", "3", "--wait")
        check(rc == 0 and got == want, "--wait: the same, no duplicates "
              "(%d lines)" % len(got))
        rc, got, e = discover(sat, tinylcm, "--timeout", "3", "--type",
                              "_other._tcp", "--static", STATIC)
        check(rc == 0 and [g["source"] for g in got] == ["static"],
              "another --type finds none of them: static fallback")

        # the core's avahi-daemon dies and comes back: announced again
        holder, dbus_pid, avahi_pid = core.mdns
        netns.kill_pid(avahi_pid)
        check(wait_log(err_path, "the daemon went away"),
              "the announcer notices the daemon went away")
        new_avahi = core.start_avahi()
        daemons.append(new_avahi)
        with open(err_path) as f:
            before = f.read().count("announcing 'core-b'")
        end = time.monotonic() + 30
        while time.monotonic() < end:
            with open(err_path) as f:
                if f.read().count("announcing 'core-b'") > before:
                    break
            time.sleep(0.1)
        for _ in range(10):
            rc, got, e = discover(sat, tinylcm, "--timeout", "5")
            if len(got) >= 3:
                break
        check(rc == 0 and got == want, "after the daemon's restart the "
              "same three are found again (%d)" % len(got))

        # the announcer stops: its goodbye empties the satellite's cache
        ann.send_signal(signal.SIGTERM)
        check(ann.wait(timeout=60) == 0, "the announcing graph stops "
              "cleanly on SIGTERM")
        err.close()
        for _ in range(10):
            rc, got, e = discover(sat, tinylcm, "--timeout", "2",
                                  "--static", STATIC)
            if all(g.get("source") == "static" for g in got):
                break
            time.sleep(0.5)
        check(rc == 0 and got == [{
            "name": STATIC, "host": "10.77.200.9",
            "address": "10.77.200.9", "port": 8471, "url": STATIC,
            "prio": 0, "tls": False, "id": "", "path": "", "txt": {},
            "source": "static"}], "no core announced: the static core "
              "(%s)" % got)
        check("no _tinylcm._tcp service answered within 2.0 s: using 1 "
              "static core" in e, "and a warning says why: %s" % e.strip())
        rc, got, e = discover(sat, tinylcm, "--timeout", "1")
        check(rc == 1 and not got and "no core: no _tinylcm._tcp service "
              "answered within 1.0 s and no static cores are configured"
              in e, "no core and no fallback: exit 1 with the reason")

        shipped_graphs(tinylcm, core, sat, tmp)

        # the satellite's daemon gone: Avahi unavailable, fallback
        sat.stop_mdns()
        for pid in daemons[2:4]:
            check(netns.pid_gone(pid),
                  "satellite daemon %d killed" % pid)
        rc, got, e = discover(sat, tinylcm, "--timeout", "2",
                              "--static", STATIC)
        check(rc == 0 and [g["url"] for g in got] == [STATIC] and
              "Avahi unavailable (connecting to avahi-daemon: Daemon not "
              "running): using 1 static core" in e,
              "without avahi-daemon: fallback, and why (%s)" % e.strip())

        # announcing with required: true and no daemon refuses to start
        r = sat.run([tinylcm, "run", graph, "--headless", "--set",
                     "a.required=true", "--duration", "2"], timeout=60)
        check(r.returncode == 1 and "cannot reach avahi-daemon: Daemon "
              "not running" in r.stderr, "required: true without a "
              "daemon: the start fails (%s)" % r.stderr.strip()[-300:])
        r = sat.run([tinylcm, "run", graph, "--headless", "--duration",
                     "1"], timeout=60)
        check(r.returncode == 0 and "not announced via mDNS yet: Daemon "
              "not running (waiting for avahi-daemon)" in r.stderr, "required: false without a daemon: runs, warns "
              "(%s)" % r.stderr.strip()[-300:])

    # bad input, no namespace needed
    for args, want in (
            (["--static", "http://x:1"], "static core 'http://x:1': "
             "expected tcp://HOST:PORT"),
            (["--static", "tcp://x"], "static core 'tcp://x': expected "
             "HOST:PORT"),
            (["--static", "tcp://x:70000"], "a port 1..65535"),
            (["--timeout", "abc"], "--timeout 'abc': expected seconds"),
            (["--bogus"], "unknown argument '--bogus'"),
            (["--type"], "--type needs a value")):
        r = subprocess.run([tinylcm, "discover"] + args,
                           capture_output=True, text=True, timeout=60)
        check(r.returncode == 2 and want in r.stderr,
              "discover %s: exit 2, %s" % (" ".join(args), r.stderr.strip()))
    bad = os.path.join(tmp, "bad.yaml")
    with open(bad, "w") as f:
        f.write("graph: bad\nnodes:\n  a:\n    type: discovery.announce\n"
                "    params: {port: 1, txt: [novalue]}\n")
    r = subprocess.run([tinylcm, "run", bad, "--headless", "--duration",
                        "1"], capture_output=True, text=True, timeout=60)
    check(r.returncode == 1 and "TXT record 'novalue': expected key=value"
          in r.stderr, "a TXT record without '=' is refused: %s"
          % r.stderr.strip()[-200:])

    left = [p for p in daemons if not netns.pid_gone(p)]
    check(not left, "every daemon started is gone (%s)" % left)
    shutil.rmtree(tmp, ignore_errors=True)
    print("%d checks, %d failed" % (checks, failures))
    return 1 if failures or not checks else 0


if __name__ == "__main__":
    sys.exit(main())

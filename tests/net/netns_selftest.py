#!/usr/bin/python3
"""netns_selftest.py — netns.py makes real, separate hosts and real faults.

Leftovers of a crashed run (a namespace named after a dead PID, with a
process in it) are removed on entry; two hosts on a veth pair talk TCP
with addresses that exist only in their namespaces; a cut (link down) makes
connects fail and an open connection wait, and after `up` the held bytes
arrive (TCP retransmits: a cut is not a reset); a tc tbf limit of 1 mbit
bounds the measured throughput (at most twice the rate, a wide margin
the qdisc guarantees) and lifting it lets the same transfer go faster
than that; three hosts on a bridge, one cable cut, the other two still
talk; on exit every process started is gone and so are the namespaces.

usage: netns_selftest.py
Exit 77 (skip) without root / ip netns, unless CI=true.
"""
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import netns  # noqa: E402

PY = "/usr/bin/python3"
failures = checks = 0

# A server: accepts connections one after another; echoes (mode echo) or
# counts bytes and prints "N SECONDS" from first to last byte (mode sink).
SERVER = r"""
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(8)
print("ready", flush=True)
while True:
    c, _ = s.accept()
    n, t0 = 0, None
    while True:
        d = c.recv(65536)
        if not d:
            break
        if t0 is None:
            t0 = time.monotonic()
        n += len(d)
        if sys.argv[3] == "echo":
            c.sendall(d)
    if sys.argv[3] == "sink":
        print(n, time.monotonic() - t0, flush=True)
    c.close()
"""

# A client: connect (timeout 2 s) and exchange/send; prints what happened.
CLIENT = r"""
import socket, sys
try:
    c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2)
except OSError as e:
    print("connect-failed", type(e).__name__); sys.exit(0)
if sys.argv[3] == "echo":
    msg = sys.argv[4].encode(); c.sendall(msg); got = b""
    while len(got) < len(msg):
        d = c.recv(100)
        if not d: break
        got += d
    print("echo", got.decode())
else:
    c.settimeout(60); c.sendall(b"x" * int(sys.argv[4])); print("sent")
c.close()
"""


def check(cond, what):
    global failures, checks
    checks += 1
    print("%-4s %s" % ("ok" if cond else "FAIL", what), flush=True)
    if not cond:
        failures += 1


def serve(host, mode, port=7000):
    p = host.popen([PY, "-c", SERVER, host.addr(), str(port), mode],
                   stdout=subprocess.PIPE, text=True)
    check(p.stdout.readline().strip() == "ready",
          "%s server on %s:%d" % (mode, host.addr(), port))
    return p


def client(host, addr, mode, arg, port=7000):
    r = host.run([PY, "-c", CLIENT, addr, str(port), mode, str(arg)],
                 timeout=120)
    return r.stdout.strip()


def dead_pid():
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def main():
    netns.require_netns()

    # a leftover of a crashed run: a namespace named after a dead PID
    old = "%snsself-%d-x" % (netns.PREFIX, dead_pid())
    subprocess.run(["ip", "netns", "add", old], check=True)
    orphan = subprocess.Popen(["ip", "netns", "exec", old, "sleep", "600"])
    time.sleep(0.2)

    with netns.Net("nsself") as net:
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True,
                                text=True).stdout
        check(old not in listed, "a crashed run's namespace is removed")
        check(netns.pid_gone(orphan.pid), "and its process killed")
        orphan.wait(timeout=10)

        a, b = net.host("a"), net.host("b")
        ab = net.link(a, b)
        check((a.addr(b), b.addr(a)) == ("10.77.1.1", "10.77.1.2"),
              "addresses %s, %s" % (a.addr(b), b.addr(a)))
        echo = serve(b, "echo")
        check(client(a, b.addr(), "echo", "hello") == "echo hello",
              "a reaches b's server over the veth pair")
        mine = subprocess.run(["ip", "-o", "addr"], capture_output=True,
                              text=True).stdout
        theirs = b.run(["ip", "-o", "addr"]).stdout
        check(" 10.77." not in mine and " 10.77.1.2/24 " in theirs and
              " 10.77.1.1/" not in theirs, "the addresses exist only inside "
              "the hosts' namespaces")

        # cut and restore
        ab.down()
        check(client(a, b.addr(), "echo", "x").startswith("connect-failed"),
              "link down: connect fails (%s)"
              % client(a, b.addr(), "echo", "x"))
        ab.up()
        ok = False
        for _ in range(50):  # carrier comes back after a moment
            if client(a, b.addr(), "echo", "again") == "echo again":
                ok = True
                break
            time.sleep(0.1)
        check(ok, "link up: b is reachable again")
        # an open connection across a cut: held, then delivered
        hold = a.popen([PY, "-c", CLIENT, b.addr(), "7000", "echo",
                        "survives"], stdout=subprocess.PIPE, text=True)
        time.sleep(0.3)
        ab.down("a")
        time.sleep(1.0)
        ab.up("a")
        out = hold.communicate(timeout=90)[0].strip()
        check(out == "echo survives", "a connection open across a cut "
              "delivers after up (%r)" % out)
        echo.kill()
        echo.wait()

        # bandwidth: tbf 1 mbit (125 000 B/s) on a's egress
        sink = serve(b, "sink", 7001)
        n = 300000
        ab.limit("1mbit", side=a)
        check(client(a, b.addr(), "sink", n, 7001) == "sent", "sent 300 kB "
              "through the limit")
        got, secs = sink.stdout.readline().split()
        rate = int(got) / max(float(secs), 1e-9)
        check(int(got) == n and rate <= 2 * 125000, "tbf 1mbit: %d bytes at "
              "%.0f B/s (limit 125000, bound 250000)" % (int(got), rate))
        ab.unlimit()
        client(a, b.addr(), "sink", n, 7001)
        got, secs = sink.stdout.readline().split()
        free = int(got) / max(float(secs), 1e-9)
        check(int(got) == n and free > 2 * 125000,
              "no limit: %.0f B/s, above the bound" % free)
        sink.kill()
        sink.wait()

        # three hosts on a bridge; one cable cut
        c, d, e = net.host("c"), net.host("d"), net.host("e")
        cables = net.lan([c, d, e])
        check([h.addr("lan") for h in (c, d, e)] ==
              ["10.77.2.1", "10.77.2.2", "10.77.2.3"], "lan addresses")
        sd, se = serve(d, "echo"), serve(e, "echo")
        check(client(c, d.addr(), "echo", "d") == "echo d" and
              client(c, e.addr(), "echo", "e") == "echo e",
              "c reaches d and e through the bridge")
        cables[2].down()
        r = client(c, e.addr(), "echo", "e")
        check(r.startswith("connect-failed") and
              client(c, d.addr(), "echo", "d") == "echo d",
              "e's cable cut: e unreachable (%s), d still reachable" % r)
        started = [p.pid for h in (a, b, c, d, e) for p in h.procs]
        names = [h.ns for h in (a, b, c, d, e)] + list(net.switches)
        for p in (sd, se):
            p.stdout.close()

    listed = subprocess.run(["ip", "netns", "list"], capture_output=True,
                            text=True).stdout
    check(not any(n in listed for n in names), "namespaces deleted on exit")
    alive = [pid for pid in started if os.path.exists("/proc/%d" % pid)]
    check(not alive, "every process started in them is gone (%s)" % alive)
    print("%d checks, %d failed" % (checks, failures))
    return 1 if failures or not checks else 0


if __name__ == "__main__":
    sys.exit(main())

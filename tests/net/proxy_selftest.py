#!/usr/bin/python3
"""proxy_selftest.py — faultproxy.py injects exactly the faults it claims.

An echo server on loopback behind the proxy; each fault is switched on
and its effect seen by a real client socket: bytes pass unchanged and are
counted exactly; a stall makes a client's read time out and then
delivers everything; a blackholed connect succeeds but never reaches the
server; refuse gives ECONNREFUSED until switched off; drop closes with
FIN or RST; cut_up forwards exactly N bytes and closes; corrupt_up flips
exactly the byte at that offset; corrupt_prob flips one bit per chunk;
reset_prob resets; delay and rate hold data back (only lower bounds,
which the proxy guarantees by construction). Then the same through the
command line and its control socket, and bad options are refused.

usage: proxy_selftest.py
"""
import errno
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from faultproxy import Control, FaultProxy  # noqa: E402

failures = checks = 0


def check(cond, what):
    global failures, checks
    checks += 1
    print("%-4s %s" % ("ok" if cond else "FAIL", what), flush=True)
    if not cond:
        failures += 1


class Echo:
    """Echoes every byte back; counts connections."""

    def __init__(self):
        self.s = socket.socket()
        self.s.bind(("127.0.0.1", 0))
        self.s.listen(64)
        self.port = self.s.getsockname()[1]
        self.accepted = 0
        self.ended = []  # (how, bytes received) per finished connection
        threading.Thread(target=self.loop, daemon=True).start()

    def loop(self):
        while True:
            try:
                c, _ = self.s.accept()
            except OSError:
                return
            self.accepted += 1
            threading.Thread(target=self.echo, args=(c,), daemon=True).start()

    def echo(self, c):
        got, end = b"", "eof"
        try:
            while True:
                d = c.recv(65536)
                if not d:
                    break
                got += d
                c.sendall(d)
        except ConnectionResetError:
            end = "reset"
        except OSError:
            end = "error"
        c.close()
        self.ended.append((end, got))


def dial(port, timeout=5):
    c = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return c


def read_exact(c, n):
    out = b""
    while len(out) < n:
        d = c.recv(n - len(out))
        if not d:
            break
        out += d
    return out


def read_all(c):
    """Everything until EOF; ('reset', bytes) on ECONNRESET."""
    out = b""
    while True:
        try:
            d = c.recv(65536)
        except ConnectionResetError:
            return "reset", out
        if not d:
            return "eof", out
        out += d


def wait_for(fn, timeout=10):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if fn():
            return True
        time.sleep(0.02)
    return fn()


def roundtrip(port, data):
    c = dial(port)
    got = []
    t = threading.Thread(target=lambda: got.append(read_exact(c, len(data))))
    t.start()
    c.sendall(data)
    t.join(30)
    c.close()
    return got[0] if got else None


def main():
    echo = Echo()
    data = os.urandom(1 << 20)
    with FaultProxy(("127.0.0.1", echo.port), seed=7) as fp:
        # passthrough, counted exactly
        check(roundtrip(fp.port, data) == data,
              "1 MiB passes both ways unchanged")
        wait_for(lambda: fp.stats()["closed"] == 1)
        st = fp.stats()
        check(st["bytes_up"] == len(data) and st["bytes_down"] == len(data),
              "bytes counted exactly (%d up, %d down)"
              % (st["bytes_up"], st["bytes_down"]))
        check(st["accepted"] == 1 and st["closed"] == 1 and
              st["active"] == 0, "one connection accepted and closed: %s"
              % st)

        # stall: a read times out, nothing is closed; unstalled it flows
        c = dial(fp.port, timeout=0.5)
        c.sendall(b"a" * 10)
        check(read_exact(c, 10) == b"a" * 10, "echo before the stall")
        fp.set(stall=True)
        c.sendall(b"hello")
        try:
            c.recv(10)
            stalled = False
        except socket.timeout:
            stalled = True
        check(stalled, "stall: the client's read times out (half-open)")
        check(fp.stats()["active"] == 1, "stall closes nothing")
        fp.set(stall=False)
        c.settimeout(5)
        check(read_exact(c, 5) == b"hello",
              "after the stall the held bytes arrive")

        # drop with FIN, then with RST
        check(fp.drop(reset=False) == 1, "drop counts one connection")
        check(read_all(c) == ("eof", b""), "drop(reset=False): EOF")
        c.close()
        c = dial(fp.port)
        c.sendall(b"x")
        read_exact(c, 1)
        fp.drop(reset=True)
        kind, _ = read_all(c)
        check(kind == "reset", "drop(reset=True): ECONNRESET (%s)" % kind)
        c.close()
        check(fp.stats()["dropped"] == 2, "dropped == 2")

        # blackhole: connect succeeds, never served, server never sees it
        before = echo.accepted
        fp.set(blackhole=True)
        c = dial(fp.port, timeout=0.5)
        c.sendall(b"ping")
        try:
            c.recv(4)
            silent = False
        except socket.timeout:
            silent = True
        check(silent, "blackhole: connect works, the read times out")
        check(echo.accepted == before and fp.stats()["blackholed"] == 1,
              "blackhole: the server never saw it, counted")
        fp.set(blackhole=False)
        check(fp.drop(reset=False) == 1, "drop ends the blackholed one")
        c.close()

        # refuse: ECONNREFUSED, then back on the same port
        fp.set(refuse=True)
        try:
            dial(fp.port).close()
            refused = None
        except ConnectionRefusedError as e:
            refused = e.errno
        check(refused == errno.ECONNREFUSED, "refuse: ECONNREFUSED")
        fp.set(refuse=False)
        check(roundtrip(fp.port, b"back") == b"back",
              "refuse off: serving on the same port again")

        # cut_up: exactly N bytes reach the server, then both closed
        fp.set(cut_up=1000)
        wait_for(lambda: fp.stats()["active"] == 0 and
                 len(echo.ended) == echo.accepted)
        n0 = len(echo.ended)
        c = dial(fp.port)
        try:
            c.sendall(data[:5000])
        except OSError:
            pass
        kind, got = read_all(c)
        c.close()
        wait_for(lambda: len(echo.ended) > n0)
        end = echo.ended[n0] if len(echo.ended) > n0 else ("none", b"")
        check(end[0] == "eof" and end[1] == data[:1000],
              "cut_up=1000: the server got exactly the first 1000 bytes, "
              "then EOF (%d, %s)" % (len(end[1]), end[0]))
        check(len(got) <= 1000 and got == data[:len(got)],
              "cut_up=1000: the client was closed too, after at most the "
              "echo of those (%d bytes, %s)" % (len(got), kind))
        fp.set(cut_up=None, cut_down=3, cut_reset=True)
        c = dial(fp.port)
        c.sendall(b"abcdef")
        kind, got = read_all(c)
        c.close()
        check(kind == "reset" and got in (b"", b"abc"),
              "cut_down=3 with cut_reset: at most 3 bytes, then RST "
              "(%r, %s)" % (got, kind))
        check(fp.stats()["cuts"] == 2, "cuts == 2")
        fp.set(cut_down=None, cut_reset=False)

        # corrupt_up: the byte at offset 10 and only it
        fp.set(corrupt_up=10)
        msg = bytes(range(64))
        got = roundtrip(fp.port, msg)
        diff = [i for i in range(64) if got[i] != msg[i]]
        check(diff == [10] and got[10] == msg[10] ^ 0xFF,
              "corrupt_up=10: exactly byte 10 flipped (%s)" % diff)
        fp.set(corrupt_up=None)
        st0 = fp.stats()["corrupted"]
        fp.set(corrupt_prob=1.0)
        c = dial(fp.port)
        c.sendall(msg)
        got = read_exact(c, 64)
        c.close()
        bits = sum(bin(a ^ b).count("1") for a, b in zip(got, msg))
        n = fp.stats()["corrupted"] - st0
        check(n >= 1 and bits == n,
              "corrupt_prob=1: one bit per chunk (%d bits, %d chunks)"
              % (bits, n))
        fp.set(corrupt_prob=0.0, reset_prob=1.0)
        c = dial(fp.port)
        c.sendall(b"boom")
        kind, _ = read_all(c)
        c.close()
        check(kind == "reset" and fp.stats()["resets"] == 1,
              "reset_prob=1: the first chunk resets (%s)" % kind)
        fp.set(reset_prob=0.0)

        # delay and rate: lower bounds only (the proxy waits by design)
        fp.set(delay=0.3)
        t0 = time.monotonic()
        check(roundtrip(fp.port, b"d") == b"d", "delay: data arrives")
        took = time.monotonic() - t0
        check(took >= 0.6, "delay=0.3: a round trip takes at least 0.6 s "
              "(%.2f)" % took)
        fp.set(delay=0.0, rate=100000.0)
        t0 = time.monotonic()
        blob = os.urandom(100000)
        check(roundtrip(fp.port, blob) == blob, "rate: data intact")
        took = time.monotonic() - t0
        check(took >= 0.9, "rate=100 kB/s: 100 kB takes at least 0.9 s "
              "(%.2f)" % took)
        fp.set(rate=0.0)

        # bad options
        for bad, want in (({"stal": True}, "unknown option 'stal'"),
                          ({"stall": 1}, "stall wants true/false"),
                          ({"delay": -1}, "delay wants a number >= 0"),
                          ({"cut_up": 1.5}, "cut_up wants a number >= 0"),
                          ({"reset_prob": 2}, "reset_prob is a prob")):
            try:
                fp.set(**bad)
                msg_ = None
            except ValueError as e:
                msg_ = str(e)
            check(msg_ is not None and want in msg_,
                  "set(%s) refused: %s" % (bad, msg_))

    # the command line and its control socket
    tmp = tempfile.mkdtemp(prefix="tlcm-proxy-")
    ctl = os.path.join(tmp, "ctl")
    p = subprocess.Popen([sys.executable, os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "faultproxy.py"),
        "--target", "127.0.0.1:%d" % echo.port, "--control", ctl,
        "--set", "delay=0"], stdout=subprocess.PIPE, text=True)
    try:
        hello = json.loads(p.stdout.readline())
        port = int(hello["listen"].rsplit(":", 1)[1])
        check(hello["control"] == ctl, "CLI prints its address and control")
        check(roundtrip(port, b"via cli") == b"via cli", "CLI forwards")
        k = Control(ctl)
        k.set(stall=True)
        c = dial(port, timeout=0.5)
        c.sendall(b"z")
        try:
            c.recv(1)
            ok = False
        except socket.timeout:
            ok = True
        check(ok, "control socket: stall takes effect")
        check(k.drop(reset=True) == 1, "control socket: drop")
        c.close()
        st = k.stats()
        check(st["accepted"] == 2 and st["dropped"] == 1 and
              st["bytes_up"] == 7, "control socket: stats %s" % st)
        try:
            k.set(nope=1)
            err = None
        except ValueError as e:
            err = str(e)
        check(err and "unknown option 'nope'" in err,
              "control socket: bad option answered: %s" % err)
        k.close()
        bad = subprocess.run([sys.executable, os.path.join(
            os.path.dirname(os.path.abspath(__file__)), "faultproxy.py"),
            "--target", "nowhere"], capture_output=True, text=True,
            timeout=30)
        check(bad.returncode == 2 and "--target 'nowhere': expected "
              "HOST:PORT" in bad.stderr, "CLI: bad --target refused: %s"
              % bad.stderr.strip())
    finally:
        p.terminate()
        p.wait(timeout=10)
    check(p.returncode == 0 and not os.path.exists(ctl),
          "CLI stops on SIGTERM and removes its control socket")
    os.rmdir(tmp)
    print("%d checks, %d failed" % (checks, failures))
    return 1 if failures or not checks else 0


if __name__ == "__main__":
    sys.exit(main())

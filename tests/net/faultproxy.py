#!/usr/bin/python3
"""faultproxy.py — a fault-injecting TCP proxy for link tests (no netem here).

It listens, connects each accepted client to the target, and copies bytes
both ways ("up": client -> target, "down": target -> client) through two
threads per direction: a reader that applies the stream faults and queues
chunks with a due time, and a writer that waits for that time, paces to
the rate and sends. Faults are options changed at any moment (set()),
from the test itself or from another process through a control socket
(one JSON object per line). What a TCP link (NNG over tcp://) can really
meet, at the application's level:

  stall        no byte moves in either direction on any connection, new
               ones included, but nothing is closed: a peer that is there
               and never answers (the kernel buffers fill, senders block)
  blackhole    new connections are accepted and never served or closed
               (half-open: connect succeeds, then silence); no upstream
  refuse       the listening socket is closed: connect gets ECONNREFUSED
               (a core that is down); off again: listening on the same port
  drop(reset)  close every connection now, with FIN or with RST
  delay        seconds added to every chunk, each direction (order kept)
  rate         bytes/s per connection and direction (a slow link)
  cut_up / cut_down
               forward exactly N bytes of each connection in that
               direction, then close both sides (RST with cut_reset):
               a frame truncated mid-stream
  corrupt_up / corrupt_down
               flip every bit of the byte at stream offset N of each
               connection (a deterministic corruption)
  corrupt_prob probability per chunk of flipping one bit somewhere in it
  reset_prob   probability per chunk of resetting the connection instead
               (seeded: the same seed gives the same faults for the same
               chunking)

Counters (stats()): accepted, active, blackholed, upstream_failed,
bytes_up, bytes_down (bytes delivered), corrupted, cuts, resets (random),
dropped (by drop), closed (connections finished).

    from faultproxy import FaultProxy
    with FaultProxy(("127.0.0.1", 5555)) as fp:   # fp.port: where to dial
        fp.set(stall=True); ...; fp.set(stall=False)
        fp.drop(reset=True); fp.stats()["dropped"]

    faultproxy.py --target HOST:PORT [--listen HOST:PORT] [--control PATH]
                  [--seed N] [--set KEY=VALUE]...
prints {"listen": "HOST:PORT", "control": PATH} once listening and runs
until SIGTERM/SIGINT; Control(PATH).set(stall=True) etc. from elsewhere.
"""
import argparse
import json
import os
import queue
import random
import select
import signal
import socket
import struct
import sys
import threading
import time

OPTIONS = {
    "stall": bool, "blackhole": bool, "refuse": bool,
    "delay": float, "rate": float,
    "cut_up": int, "cut_down": int, "cut_reset": bool,
    "corrupt_up": int, "corrupt_down": int,
    "corrupt_prob": float, "reset_prob": float,
}
DEFAULTS = {
    "stall": False, "blackhole": False, "refuse": False, "delay": 0.0,
    "rate": 0.0, "cut_up": None, "cut_down": None, "cut_reset": False,
    "corrupt_up": None, "corrupt_down": None, "corrupt_prob": 0.0,
    "reset_prob": 0.0,
}
COUNTERS = ("accepted", "blackholed", "upstream_failed", "bytes_up",
            "bytes_down", "corrupted", "cuts", "resets", "dropped",
            "closed")
TICK = 0.02  # how often idle threads look at the options and close flag


def _addr(s, what):
    host, sep, port = s.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError("%s %r: expected HOST:PORT" % (what, s))
    return (host.strip("[]") or "127.0.0.1", int(port))


def _close(sock, reset):
    try:
        if reset:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                            struct.pack("ii", 1, 0))
        sock.close()
    except OSError:
        pass


def _drain_close(socks, grace=2.0):
    end = time.monotonic() + grace
    open_ = list(socks)
    while open_ and time.monotonic() < end:
        try:
            r = select.select(open_, [], [], TICK)[0]
        except (OSError, ValueError):
            break
        for s in r:
            try:
                if not s.recv(65536):
                    open_.remove(s)
            except OSError:
                open_.remove(s)
    for s in socks:
        _close(s, False)


class _Conn:
    def __init__(self, proxy, client, upstream):
        self.p = proxy
        self.socks = {"up": upstream, "down": client}  # where data goes
        self.srcs = {"up": client, "down": upstream}
        self.off = {"up": 0, "down": 0}
        self.eof = set()
        self.done = threading.Event()
        self.lock = threading.Lock()

    def start(self):
        for d in ("up", "down"):
            q = queue.Queue()
            for fn in (self._reader, self._writer):
                threading.Thread(target=fn, args=(d, q), daemon=True).start()

    def abort(self, reset, counter=None):
        with self.lock:
            if self.done.is_set():
                return False
            self.done.set()
        self.p._count(counter)  # counted before the peers can see it
        self.p._count("closed")
        self.p._forget(self)
        socks = [self.srcs["up"], self.srcs["down"]]
        if reset:
            for s in socks:
                _close(s, True)
        else:
            # FIN after what was sent; closing with unread bytes would
            # send RST instead, so drain both until they close (or 2 s)
            for s in socks:
                try:
                    s.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
            threading.Thread(target=_drain_close, args=(socks,),
                             daemon=True).start()
        return True

    def _reader(self, d, q):
        src, p = self.srcs[d], self.p
        while not self.done.is_set():
            o = p.opts
            if o["stall"]:
                time.sleep(TICK)
                continue
            try:
                r = select.select([src], [], [], TICK)[0]
                if not r:
                    continue
                data = src.recv(65536)
            except (OSError, ValueError):
                q.put(("reset",))
                return
            if not data:
                q.put(("eof",))
                return
            with p.lock:
                if o["reset_prob"] and p.rng.random() < o["reset_prob"]:
                    hit = "reset"
                else:
                    hit = None
                    flip = (o["corrupt_prob"] and
                            p.rng.random() < o["corrupt_prob"])
                    if flip:
                        i = p.rng.randrange(len(data))
                        bit = 1 << p.rng.randrange(8)
            if hit:
                self.abort(True, "resets")
                return
            data = bytearray(data)
            off = self.off[d]
            at = o["corrupt_" + d]
            if at is not None and off <= at < off + len(data):
                data[at - off] ^= 0xFF
                p._count("corrupted")
            if flip:
                data[i] ^= bit
                p._count("corrupted")
            cut = o["cut_" + d]
            if cut is not None and off + len(data) >= cut:
                q.put(("data", time.monotonic() + o["delay"],
                       bytes(data[:max(0, cut - off)])))
                q.put(("cut", o["cut_reset"]))
                return
            self.off[d] = off + len(data)
            q.put(("data", time.monotonic() + o["delay"], bytes(data)))

    def _wait(self, until):
        while not self.done.is_set():
            left = until - time.monotonic()
            if left <= 0:
                return True
            time.sleep(min(left, TICK))
        return False

    def _send(self, dst, data):
        """Send all of data without ever blocking in the kernel (so an
        abort from another thread is seen); False when the connection
        ended."""
        view = memoryview(data)
        while view and not self.done.is_set():
            try:
                if not select.select([], [dst], [], TICK)[1]:
                    continue
                view = view[dst.send(view, socket.MSG_DONTWAIT):]
            except BlockingIOError:
                continue
            except (OSError, ValueError):
                self.abort(True)
                return False
        return not self.done.is_set()

    def _writer(self, d, q):
        dst, p = self.socks[d], self.p
        while not self.done.is_set():
            try:
                item = q.get(timeout=TICK)
            except queue.Empty:
                continue
            if item[0] == "reset":
                self.abort(True)
                return
            if item[0] == "cut":
                self.abort(item[1], "cuts")
                return
            if item[0] == "eof":
                try:
                    dst.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                with self.lock:
                    self.eof.add(d)
                    both = len(self.eof) == 2
                if both:
                    self.abort(False)
                return
            _, due, data = item
            if not self._wait(due):
                return
            at = 0
            while at < len(data):
                while p.opts["stall"] and not self.done.is_set():
                    time.sleep(TICK)
                rate = p.opts["rate"]
                n = len(data) - at
                if rate > 0:
                    n = min(n, max(1, int(rate / 50)))
                t0 = time.monotonic()
                if not self._send(dst, data[at:at + n]):
                    return
                at += n
                p._count("bytes_" + d, n)
                if rate > 0 and not self._wait(t0 + n / rate):
                    return


class FaultProxy:
    def __init__(self, target, listen=("127.0.0.1", 0), seed=1, **opts):
        self.target = target
        self.lock = threading.Lock()
        self.accept_lock = threading.Lock()
        self.rng = random.Random(seed)
        self.opts = dict(DEFAULTS)
        self.counters = dict.fromkeys(COUNTERS, 0)
        self.conns = set()
        self.holes = []
        self.stopping = threading.Event()
        self.host = listen[0]
        self.lsock = self._listen(listen[0], listen[1])
        self.port = self.lsock.getsockname()[1]
        self.set(**opts)
        self.thread = threading.Thread(target=self._accept_loop, daemon=True)
        self.thread.start()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    @property
    def address(self):
        return "%s:%d" % (self.host, self.port)

    def _listen(self, host, port):
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        s = socket.socket(fam, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, port))
        s.listen(128)
        return s

    def _count(self, name, n=1):
        if name:
            with self.lock:
                self.counters[name] += n

    def _forget(self, conn):
        with self.lock:
            self.conns.discard(conn)

    # -- control -------------------------------------------------------
    def set(self, **opts):
        """Change fault options (names and meaning: the module comment);
        None resets cut_*/corrupt_* to off. Takes effect at once."""
        new = dict(self.opts)
        for k, v in opts.items():
            if k not in OPTIONS:
                raise ValueError("faultproxy: unknown option %r (known: %s)"
                                 % (k, ", ".join(sorted(OPTIONS))))
            t = OPTIONS[k]
            if v is None and DEFAULTS[k] is None:
                new[k] = None
                continue
            if t is bool and not isinstance(v, bool):
                raise ValueError("faultproxy: %s wants true/false, got %r"
                                 % (k, v))
            if t in (int, float) and (isinstance(v, bool) or
                                      not isinstance(v, (int, float)) or
                                      v < 0 or (t is int and v != int(v))):
                raise ValueError("faultproxy: %s wants a number >= 0%s, "
                                 "got %r" % (k, "" if t is float else
                                             " (whole)", v))
            if k.endswith("_prob") and v > 1:
                raise ValueError("faultproxy: %s is a probability, got %r"
                                 % (k, v))
            new[k] = t(v)
        refuse_changed = new["refuse"] != self.opts["refuse"]
        self.opts = new  # one assignment: readers see old or new, whole
        if refuse_changed:
            with self.accept_lock, self.lock:
                if new["refuse"]:
                    _close(self.lsock, False)
                    self.lsock = None
                else:
                    self.lsock = self._listen(self.host, self.port)
        return dict(new)

    def drop(self, reset=True):
        """Close every connection now (RST when reset, else FIN); also the
        blackholed ones. Returns how many."""
        with self.lock:
            conns, holes = list(self.conns), self.holes
            self.holes = []
        n = sum(1 for c in conns if c.abort(reset, "dropped"))
        for s in holes:
            _close(s, reset)
        return n + len(holes)

    def stats(self):
        with self.lock:
            out = dict(self.counters)
            out["active"] = len(self.conns)
        return out

    def zero(self):
        with self.lock:
            self.counters = dict.fromkeys(COUNTERS, 0)

    def close(self):
        self.stopping.set()
        self.thread.join(timeout=5)
        self.drop(reset=True)
        with self.lock:
            if self.lsock:
                _close(self.lsock, False)
                self.lsock = None

    # -- accepting -----------------------------------------------------
    def _accept_loop(self):
        while not self.stopping.is_set():
            # set(refuse=...) takes accept_lock: no select holds the
            # listener open while it is closed or bound again
            with self.accept_lock:
                ls = self.lsock
                client = None
                try:
                    if ls and select.select([ls], [], [], TICK)[0]:
                        client, _ = ls.accept()
                except (OSError, ValueError):
                    pass
            if client is None:
                if ls is None:
                    time.sleep(TICK)
                continue
            self._count("accepted")
            if self.opts["blackhole"]:
                with self.lock:
                    self.holes.append(client)
                self._count("blackholed")
                continue
            try:
                up = socket.create_connection(self.target, timeout=5)
                up.settimeout(None)
            except OSError:
                self._count("upstream_failed")
                _close(client, True)
                continue
            for s in (client, up):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            c = _Conn(self, client, up)
            with self.lock:
                self.conns.add(c)
            c.start()


# -- the control socket (for another process) ------------------------------
def _serve_control(proxy, path, stop):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(8)

    def one(conn):
        f = conn.makefile("rw")
        for line in f:
            try:
                req = json.loads(line)
                if not isinstance(req, dict):
                    raise ValueError("a request is a JSON object")
                op = req.pop("op", None)
                if op == "set":
                    out = {"ok": True, "opts": proxy.set(**req)}
                elif op == "drop":
                    out = {"ok": True,
                           "dropped": proxy.drop(bool(req.get("reset",
                                                              True)))}
                elif op == "stats":
                    out = {"ok": True, "stats": proxy.stats()}
                elif op == "zero":
                    proxy.zero()
                    out = {"ok": True}
                else:
                    raise ValueError("unknown op %r (set, drop, stats, "
                                     "zero)" % op)
            except (ValueError, TypeError) as e:
                out = {"ok": False, "error": str(e)}
            f.write(json.dumps(out) + "\n")
            f.flush()
        conn.close()

    while not stop.is_set():
        if select.select([srv], [], [], 0.1)[0]:
            conn, _ = srv.accept()
            threading.Thread(target=one, args=(conn,), daemon=True).start()
    srv.close()


class Control:
    """Drive a faultproxy.py process through its control socket."""

    def __init__(self, path, timeout=10):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(timeout)
        self.s.connect(path)
        self.f = self.s.makefile("rw")

    def call(self, op, **kw):
        kw["op"] = op
        self.f.write(json.dumps(kw) + "\n")
        self.f.flush()
        out = json.loads(self.f.readline())
        if not out.get("ok"):
            raise ValueError(out.get("error"))
        return out

    def set(self, **opts):
        return self.call("set", **opts)["opts"]

    def drop(self, reset=True):
        return self.call("drop", reset=reset)["dropped"]

    def stats(self):
        return self.call("stats")["stats"]

    def close(self):
        self.s.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--target", required=True)
    ap.add_argument("--listen", default="127.0.0.1:0")
    ap.add_argument("--control")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--set", action="append", default=[],
                    metavar="KEY=VALUE", help="initial option (JSON value)")
    a = ap.parse_args()
    try:
        opts = {}
        for kv in a.set:
            k, sep, v = kv.partition("=")
            if not sep:
                raise ValueError("--set %r: expected KEY=VALUE" % kv)
            opts[k] = json.loads(v)
        proxy = FaultProxy(_addr(a.target, "--target"),
                           _addr(a.listen, "--listen"), a.seed, **opts)
    except (ValueError, OSError) as e:
        print("faultproxy: %s" % e, file=sys.stderr)
        return 2
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    ctl = None
    if a.control:
        ctl = threading.Thread(target=_serve_control,
                               args=(proxy, a.control, stop), daemon=True)
        ctl.start()
        while not os.path.exists(a.control):
            time.sleep(0.01)
    print(json.dumps({"listen": proxy.address, "control": a.control}),
          flush=True)
    while not stop.is_set():
        stop.wait(0.2)
    proxy.close()
    if ctl:
        ctl.join(timeout=2)
        try:
            os.unlink(a.control)
        except FileNotFoundError:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())

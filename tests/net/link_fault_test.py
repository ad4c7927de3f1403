#!/usr/bin/python3
"""link_fault_test.py — satellites and cores on separate hosts, with faults.

usage: link_fault_test.py TINYLCM SOURCE_DIR

Hosts are network namespaces on one bridge (tests/net/netns.py): three
satellites s1..s3 (gen -> link.tx, resume_trace) and two cores c1, c2
running graphs/core.yaml with `--standby` on ONE shared store (the
standby takes over the primary's store when it is gone: docs/link.md,
Core failover). Satellites list [c1, c2]; s3 reaches c1 through the
fault-injecting proxy (tests/net/faultproxy.py, a process on c1). Each
cycle picks one fault with a seeded RNG (the seed is printed; TLCM_SEED
repeats a run): kill -9 of a satellite, kill -9 of the active core
(restarted as the standby), a satellite's or the active core's cable cut
(ip link down/up), a tc tbf bandwidth limit, and proxy stalls, half-open
connections (blackhole), drops with RST, refusals and cut frames. At the
end every Blob 1..N of every satellite must be in the core's durable
record (link.ledger in graphs/core.yaml) exactly once, in order.

Then two cores that share nothing: a satellite fails over from c1
(killed) to c2; each core has no duplicate and keeps the satellite's
order, c1 holds 1..k, c2 holds j..N with j <= k+1 (the batches c1 stored
but had not acknowledged reach both cores once each), the union is 1..N.
Then graphs/satellite.yaml (sensor.sysfs) and graphs/core.yaml as they
ship, on two hosts.

Without network namespaces (not root, no iproute2) the test says why and
runs the same scenarios over loopback, every satellite through a proxy
(cable cuts become proxy refusals plus resets). TLCM_LONG_ROUNDS=N: N
fault cycles (default 8; use >= 200 for the long run).
TLCM_NET_LOOPBACK=1 runs the loopback variant even where namespaces work.
"""
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import netns  # noqa: E402
from faultproxy import Control  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
LINK_PORT = 7731
PROXY_PORT = 7741
failures = checks = 0


def check(cond, what):
    global failures, checks
    checks += 1
    if not cond:
        failures += 1
        print("FAIL:", what, flush=True)


class Local:
    """Loopback stand-in for a netns.Host."""
    name = "lo"

    def __init__(self):
        self.procs = []

    def popen(self, argv, **kw):
        p = subprocess.Popen(argv, **kw)
        self.procs.append(p)
        return p

    def kill_all(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()


LOCAL = Local()


class Proc:
    """One tinylcm process on a host, restartable; a log per start."""

    def __init__(self, host, argv, log, env=None):
        self.host, self.argv, self.log = host, argv, log
        self.env = env
        self.p = None
        self.starts = 0

    def start(self):
        self.starts += 1
        f = open(f"{self.log}.{self.starts}", "w")
        e = dict(os.environ)
        e.update(self.env or {})
        self.p = self.host.popen(self.argv, stdout=f,
                                 stderr=subprocess.STDOUT, env=e)
        f.close()

    def text(self):
        try:
            with open(f"{self.log}.{self.starts}") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def alive(self):
        return self.p is not None and self.p.poll() is None

    def kill9(self):
        if self.alive():
            self.p.kill()
            self.p.wait()

    def term(self, timeout=60):
        if self.alive():
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill9()
                return None
        return self.p.returncode if self.p else None

    def wait_for(self, text, timeout=30):
        end = time.time() + timeout
        while time.time() < end and self.alive():
            if text in self.text():
                return True
            time.sleep(0.05)
        check(False, f"{self.log}: no '{text}': {self.text()[-500:]}")
        return False

    def active(self):
        """A core that holds the store (not waiting as the standby)."""
        t = self.text()
        return self.alive() and ("waiting to take over" not in t or
                                 "is ours now" in t)


def sat_yaml(d, i, urls, n, rate):
    g = os.path.join(d, f"sat{i}.yaml")
    cores = ", ".join(f'"{u}"' for u in urls)
    with open(g, "w") as f:
        f.write(f"""graph: sat{i}
settings: {{ store: {d}/sat{i}-store, sync: batch, workers: 1, introspect: "off" }}
nodes:
  g: {{ type: gen, params: {{ count: {n}, rate_hz: {rate}, payload: 16 }} }}
  tx: {{ type: link.tx, params: {{ cores: [{cores}], satellite: sat-{i}, resume_trace: true, linger: 300s, backoff_min: 10ms, backoff_max: 300ms, timeout: 2s, batch_count: 100, batch_interval: 5ms }} }}
edges:
  - {{ from: g.out, to: tx.in }}
""")
    return g


def core_proc(tl, src, host, d, name, store, listen, report, standby):
    env = {"CORE_STORE": store, "CORE_SYNC": "batch",
           "CORE_LINK_LISTEN": listen, "CORE_LINK_REPORT": report,
           "CORE_LISTEN": "http://127.0.0.1:0"}
    argv = [tl, "run", os.path.join(src, "graphs", "core.yaml"),
            "--headless"] + (["--standby"] if standby else [])
    return Proc(host, argv, os.path.join(d, name + ".log"), env)


def finished(s):
    t = s.text()
    return (s.p is not None and not s.alive() and s.p.returncode == 0 and
            "finished" in t and "still unacknowledged" not in t)


def finish_sats(sats, deadline):
    """Restart each satellite until it exits 0 with everything acked."""
    for s in sats:
        while not finished(s):
            if not s.alive():
                s.start()
            if time.time() > deadline:
                check(False, f"{s.log} did not finish")
                s.kill9()
                return
            time.sleep(0.1)


def exact(rep, ids, n, what):
    check(rep.get("bad") == 0, f"{what}: the ledger saw bad messages")
    total = dups = lost = 0
    for i in ids:
        s = rep["satellites"].get(f"sat-{i}")
        check(s is not None, f"{what}: nothing from sat-{i}")
        if s is None:
            lost += n
            continue
        seqs = s["seqs"]
        total += len(seqs)
        d = len(seqs) - len(set(seqs))
        miss = sorted(set(range(1, n + 1)) - set(seqs))
        dups += d
        lost += len(miss)
        if seqs != list(range(1, n + 1)):
            order = sum(1 for a, b in zip(seqs, seqs[1:]) if b <= a)
            print(f"  sat-{i}: {len(seqs)} recorded, {d} duplicates, "
                  f"missing {miss[:10]}..., {order} out of order")
        check(seqs == list(range(1, n + 1)),
              f"{what}: sat-{i} exactly once, in order ({len(seqs)} of {n})")
    print(f"{what}: {total} events recorded of {n * len(ids)}, "
          f"{dups} duplicates, {lost} lost", flush=True)


def load_report(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        check(False, f"report {path}: {e}")
        return {"bad": None, "satellites": {}}


def start_proxy(host, target, listen, ctl_path):
    p = host.popen([sys.executable, os.path.join(HERE, "faultproxy.py"),
                    "--target", target, "--listen", listen, "--control",
                    ctl_path, "--seed", "7"], stdout=subprocess.PIPE,
                   text=True)
    line = p.stdout.readline()
    if not line:
        raise RuntimeError("faultproxy did not start")
    return json.loads(line)["listen"], Control(ctl_path)


CLEAR = dict(stall=False, blackhole=False, refuse=False, delay=0.0,
             rate=0.0, cut_up=None, cut_down=None, cut_reset=False)


def scenario_shared(tl, src, net, rounds, seed, d):
    """3 satellites, 2 cores on one store (active + standby), faults."""
    rnd = random.Random(seed)
    n = max(3000, rounds * 350)
    rate = 300
    store, report = f"{d}/shared-store", f"{d}/shared-report.json"
    if net:
        sh = [net.host(f"s{i}") for i in range(1, 4)]
        ch = [net.host("c1"), net.host("c2")]
        cables = dict(zip([h.name for h in sh + ch], net.lan(sh + ch)))
        addr = {h.name: h.addr("lan") for h in sh + ch}
        listen = [f"tcp://0.0.0.0:{LINK_PORT}"] * 2
        direct = [f"tcp://{addr['c1']}:{LINK_PORT}",
                  f"tcp://{addr['c2']}:{LINK_PORT}"]
        _, ctl = start_proxy(ch[0], f"127.0.0.1:{LINK_PORT}",
                                 f"0.0.0.0:{PROXY_PORT}", f"{d}/px.sock")
        proxied = f"tcp://{addr['c1']}:{PROXY_PORT}"
        urls = [direct, direct, [proxied, direct[1]]]
        ctls = [ctl]
    else:
        loc = LOCAL
        sh, ch, cables = [loc] * 3, [loc, loc], {}
        ports = [netns_free_port(), netns_free_port()]
        listen = [f"tcp://127.0.0.1:{p}" for p in ports]
        ctls, urls = [], []
        for i in range(3):  # every satellite through its own proxies
            u = []
            for k in range(2):
                a, c = start_proxy(loc, f"127.0.0.1:{ports[k]}",
                                   "127.0.0.1:0", f"{d}/px{i}{k}.sock")
                ctls.append(c)
                u.append(f"tcp://{a}")
            urls.append(u)
    cores = [core_proc(tl, src, ch[k], d, f"c{k + 1}", store, listen[k],
                       report, True) for k in range(2)]
    cores[0].start()
    cores[0].wait_for("listening on")
    cores[1].start()
    cores[1].wait_for("waiting to take over")
    sats = [Proc(sh[i], [tl, "run", sat_yaml(d, i, urls[i], n, rate)],
                 os.path.join(d, f"sat{i}.log")) for i in range(3)]
    for s in sats:
        s.start()
    faults = {}
    kinds = ["kill_sat", "kill_core", "cut_sat", "cut_core", "tbf",
             "stall", "blackhole", "drop", "refuse", "cut_frame"]
    for r in range(rounds):
        time.sleep(rnd.uniform(0.1, 0.5))
        k = rnd.choice(kinds)
        if r == rounds // 2:
            k = "kill_core"  # every run has at least one takeover
        faults[k] = faults.get(k, 0) + 1
        hold = rnd.uniform(0.2, 1.2)
        if k == "kill_sat":
            s = rnd.choice(sats)
            s.kill9()
            time.sleep(rnd.uniform(0, 0.3))
            s.start()
        elif k == "kill_core":
            act = [c for c in cores if c.active()]
            c = act[0] if act else rnd.choice(cores)
            c.kill9()
            time.sleep(rnd.uniform(0, 0.3))
            c.start()  # comes back as the standby
        elif k in ("cut_sat", "cut_core") and net:
            if k == "cut_sat":
                name = f"s{rnd.randint(1, 3)}"
            else:
                act = [i for i, c in enumerate(cores) if c.active()]
                name = f"c{(act[0] if act else 0) + 1}"
            cables[name].down()
            time.sleep(hold)
            cables[name].up()
        elif k == "tbf" and net:
            name = f"s{rnd.randint(1, 3)}"
            cables[name].limit("256kbit")
            time.sleep(hold * 2)
            cables[name].unlimit()
        else:
            # proxy faults (and, over loopback, cuts and limits)
            c = rnd.choice(ctls)
            if k in ("stall", "blackhole", "refuse"):
                c.set(**{k: True})
                if k == "blackhole":
                    c.drop(reset=True)
                time.sleep(hold)
                c.set(**CLEAR)
            elif k in ("cut_sat", "cut_core"):
                c.set(refuse=True)
                c.drop(reset=True)
                time.sleep(hold)
                c.set(**CLEAR)
            elif k == "tbf":
                c.set(rate=20000.0)
                time.sleep(hold * 2)
                c.set(**CLEAR)
            elif k == "cut_frame":
                c.set(cut_up=rnd.randint(20, 4000),
                      cut_reset=rnd.random() < 0.5)
                time.sleep(hold)
                c.set(**CLEAR)
            else:
                c.drop(reset=True)
        if not any(c.alive() for c in cores):
            check(False, "both cores died")
            break
        if r % 25 == 24:
            print(f"  {r + 1} cycles", flush=True)
    print(f"faults (seed {seed}): {json.dumps(faults, sort_keys=True)}",
          flush=True)
    for c in ctls:
        c.set(**CLEAR)
    for i, c in enumerate(cores):  # a core that died by itself: back
        if not c.alive():
            print(f"  core c{i + 1} had exited: {c.text()[-500:]}")
            c.start()
    finish_sats(sats, time.time() + 300 + rounds * 2)
    act = [c for c in cores if c.active()]
    check(len(act) == 1, f"one active core at the end, {len(act)}")
    for c in cores:
        if c not in act:
            c.term()
    for c in act:
        check(c.term() == 0, f"core stops cleanly: {c.text()[-800:]}")
    takeovers = sum(c.text().count("is ours now") for c in cores)
    print(f"cores started {cores[0].starts + cores[1].starts} times, "
          f"last run took over from the standby: {takeovers}")
    exact(load_report(report), range(3), n, "shared store, faults")
    if failures:
        for s in sats:
            os.system(f"tail -n 5 {s.log}.{s.starts}")
        for c in cores:
            os.system(f"tail -n 20 {c.log}.{c.starts}")


def netns_free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def scenario_nothing_shared(tl, src, net, d):
    """Two cores with their own stores; the satellite fails over."""
    n, rate = 4000, 1000
    if net:
        s, c1h, c2h = net.host("n0"), net.host("n1"), net.host("n2")
        net.lan([s, c1h, c2h])
        listen = [f"tcp://0.0.0.0:{LINK_PORT}"] * 2
        urls = [f"tcp://{h.addr('lan')}:{LINK_PORT}" for h in (c1h, c2h)]
    else:
        s = c1h = c2h = LOCAL
        ports = [netns_free_port(), netns_free_port()]
        listen = urls = [f"tcp://127.0.0.1:{p}" for p in ports]
    cores = [core_proc(tl, src, h, d, f"ns-c{k + 1}", f"{d}/ns-store{k}",
                       listen[k], f"{d}/ns-report{k}.json", False)
             for k, h in enumerate((c1h, c2h))]
    for c in cores:
        c.start()
    for c in cores:
        c.wait_for("listening on")
    sat = Proc(s, [tl, "run", sat_yaml(d, 9, urls, n, rate)],
               os.path.join(d, "ns-sat.log"))
    sat.start()
    time.sleep(2.0)
    cores[0].kill9()                # the primary dies mid-stream
    finish_sats([sat], time.time() + 120)
    check(cores[1].term() == 0, "c2 stops cleanly")
    cores[0].start()                # c1 back, to write its report
    cores[0].wait_for("listening on")
    check(cores[0].term() == 0, "c1 stops cleanly")
    a = load_report(f"{d}/ns-report0.json")["satellites"].get(
        "sat-9", {"seqs": []})["seqs"]
    b = load_report(f"{d}/ns-report1.json")["satellites"].get(
        "sat-9", {"seqs": []})["seqs"]
    k = len(a)
    j = b[0] if b else n + 1
    check(a == list(range(1, k + 1)) and k > 0,
          f"c1 holds 1..k in order, no duplicate ({k}, first {a[:3]})")
    check(b == list(range(j, n + 1)),
          f"c2 holds j..N in order, no duplicate (j={j}, {len(b)})")
    check(j <= k + 1, f"nothing lost between the cores (j={j}, k={k})")
    check(set(a) | set(b) == set(range(1, n + 1)), "union is 1..N")
    print(f"nothing shared: c1 {k} events (1..{k}), c2 {len(b)} "
          f"({j}..{n}); {max(0, k - j + 1)} delivered to both cores once "
          f"each", flush=True)


def scenario_shipped(tl, src, net, d):
    """graphs/satellite.yaml -> graphs/core.yaml, as shipped."""
    count = 5
    if net:
        s, c = net.host("y0"), net.host("y1")
        net.lan([s, c])
        listen = f"tcp://0.0.0.0:{LINK_PORT}"
        url = f"tcp://{c.addr('lan')}:{LINK_PORT}"
    else:
        s = c = LOCAL
        port = netns_free_port()
        listen = url = f"tcp://127.0.0.1:{port}"
    core = core_proc(tl, src, c, d, "y-core", f"{d}/y-store", listen,
                     f"{d}/y-report.json", False)
    core.start()
    core.wait_for("listening on")
    sat = Proc(s, [tl, "run", os.path.join(src, "graphs", "satellite.yaml"),
                   "--headless", "--set", "sensors.interval=100ms", "--set",
                   "out.linger=60s"], os.path.join(d, "y-sat.log"),
               {"SATELLITE_STORE": f"{d}/y-sat-store",
                "SATELLITE_CORES": url, "SATELLITE_ID": "sat-yaml",
                "SATELLITE_COUNT": str(count)})
    sat.start()
    try:
        rc = sat.p.wait(timeout=120)
    except subprocess.TimeoutExpired:
        sat.kill9()
        rc = None
    check(rc == 0, f"satellite.yaml exits 0: {sat.text()[-800:]}")
    check(core.term() == 0, "core.yaml stops cleanly")
    got = load_report(f"{d}/y-report.json")["satellites"].get("sat-yaml")
    check(got is not None and got["count"] == count,
          f"core.yaml recorded the {count} sysfs reports: {got}")


def main():
    tl, src = sys.argv[1], sys.argv[2]
    rounds = int(os.environ.get("TLCM_LONG_ROUNDS", "8"))
    seed = int(os.environ.get("TLCM_SEED", "0")) or random.randrange(1, 1 << 30)
    print(f"seed {seed} (TLCM_SEED={seed} repeats it), {rounds} cycles",
          flush=True)
    why = netns.netns_unavailable()
    if os.environ.get("TLCM_NET_LOOPBACK") == "1" and not why:
        why = "TLCM_NET_LOOPBACK=1"
    if why:
        print(f"network namespaces not available: {why}; running the "
              "same scenarios over loopback through the proxy",
              flush=True)
    with tempfile.TemporaryDirectory(prefix="tlcm-lfault-") as d:
        if why:
            try:
                scenario_shared(tl, src, None, rounds, seed, d)
                scenario_nothing_shared(tl, src, None, d)
                scenario_shipped(tl, src, None, d)
            finally:
                LOCAL.kill_all()
        else:
            with netns.Net("lfault") as net:
                scenario_shared(tl, src, net, rounds, seed, d)
                scenario_nothing_shared(tl, src, net, d)
                scenario_shipped(tl, src, net, d)
    print(f"{checks} checks, {failures} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

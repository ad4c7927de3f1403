#!/usr/bin/python3
"""link_test.py — satellites and a core as separate processes (nodes/link).

Each satellite runs gen → link.tx (resume_trace, so gen's replay after a
crash is skipped up to what the queue already holds); the core runs
link.rx → link.ledger, which records every message once, durably. Over
tcp:// on loopback, 3 satellites; the satellites and the core are killed
with SIGKILL at random moments and restarted; at the end every Blob seq
1..N of every satellite must be in the ledger exactly once, in order.
Then tls+tcp:// with mutual TLS (certificates made with openssl here; a
satellite without a client certificate gets nothing in), and a bad peer
(a raw socket sending garbage) that is disconnected while a good
satellite delivers everything.
usage: link_test.py TINYLCM   (TLCM_LONG_ROUNDS=N: N kill rounds, default 6)
"""
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time

failures = checks = 0
ADMIN = "admin-token-for-the-link-test"


def check(cond, what):
    global failures, checks
    checks += 1
    if not cond:
        failures += 1
        print("FAIL:", what, flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Proc:
    def __init__(self, tl, graph, log):
        self.tl, self.graph, self.log = tl, graph, log
        self.p = None
        self.starts = 0

    def start(self):
        f = open(self.log, "a")
        self.p = subprocess.Popen([self.tl, "run", self.graph], stdout=f,
                                  stderr=subprocess.STDOUT)
        f.close()
        self.starts += 1

    def kill9(self):
        if self.p and self.p.poll() is None:
            self.p.kill()
            self.p.wait()

    def alive(self):
        return self.p is not None and self.p.poll() is None


def core_yaml(d, url, extra="", http=""):
    """The core graph; with http (a port), also the `core` node, whose
    GET /api/v1/satellites lists what link.rx recorded."""
    g = os.path.join(d, "core.yaml")
    api = (f"""  api: {{ type: core, params: {{ listen: "http://127.0.0.1:{http}","""
           f""" admin_token: "{ADMIN}" }} }}\n""" if http else "")
    with open(g, "w") as f:
        f.write(f"""graph: core
settings: {{ store: {d}/core-store, sync: batch, workers: 2, introspect: "off" }}
nodes:
  rx: {{ type: link.rx, params: {{ listen: "{url}", hello_timeout: 2s{extra} }} }}
  ledger: {{ type: link.ledger, params: {{ report: {d}/report.json }} }}
{api}edges:
  - {{ from: rx.remote, to: ledger.in }}
""")
    return g


def sat_yaml(d, i, url, n, rate, extra=""):
    g = os.path.join(d, f"sat{i}.yaml")
    with open(g, "w") as f:
        f.write(f"""graph: sat{i}
settings: {{ store: {d}/sat{i}-store, sync: batch, workers: 1, introspect: "off" }}
nodes:
  g: {{ type: gen, params: {{ count: {n}, rate_hz: {rate}, payload: 16 }} }}
  tx: {{ type: link.tx, params: {{ cores: ["{url}"], satellite: sat-{i}, resume_trace: true, linger: 120s, backoff_min: 10ms, backoff_max: 300ms, batch_count: 200, batch_interval: 5ms{extra} }} }}
edges:
  - {{ from: g.out, to: tx.in }}
""")
    return g


def finish_sats(sats, deadline):
    """Run each satellite until it exits 0 with everything acknowledged."""
    for s in sats:
        while True:
            if not s.alive() and s.p is not None:
                rc = s.p.returncode
                with open(s.log) as f:
                    tail = f.read()[-3000:]
                if rc == 0 and "still unacknowledged" not in \
                        tail.split("linger")[-1] and "finished" in tail:
                    break
                s.start()
            if time.time() > deadline:
                check(False, f"{s.graph} did not finish")
                s.kill9()
                return
            time.sleep(0.1)


def stop_core(core):
    if core.alive():
        core.p.send_signal(signal.SIGTERM)
        try:
            core.p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            core.kill9()
            check(False, "core did not stop on SIGTERM")
    check(core.p.returncode == 0, f"core exit status {core.p.returncode}")


def report(d):
    with open(os.path.join(d, "report.json")) as f:
        return json.load(f)


def exact(rep, sats, n, what):
    check(rep.get("bad") == 0, f"{what}: ledger saw bad messages")
    for i in sats:
        s = rep["satellites"].get(f"sat-{i}")
        check(s is not None, f"{what}: nothing from sat-{i}")
        if s is None:
            continue
        seqs = s["seqs"]
        ok = seqs == list(range(1, n + 1))
        if not ok:
            dup = len(seqs) - len(set(seqs))
            miss = sorted(set(range(1, n + 1)) - set(seqs))[:10]
            order = sum(1 for a, b in zip(seqs, seqs[1:]) if b <= a)
            print(f"  sat-{i}: {len(seqs)} recorded, {dup} duplicates, "
                  f"missing {miss}..., {order} out of order")
        check(ok, f"{what}: sat-{i} delivered exactly once, in order "
                  f"({len(seqs)} of {n})")


def scenario_kills(tl, rounds):
    n, rate = 15000, 5000
    with tempfile.TemporaryDirectory() as d:
        url = f"tcp://127.0.0.1:{free_port()}"
        core = Proc(tl, core_yaml(d, url), os.path.join(d, "core.log"))
        core.start()
        sats = [Proc(tl, sat_yaml(d, i, url, n, rate),
                     os.path.join(d, f"sat{i}.log")) for i in range(3)]
        for s in sats:
            s.start()
        rnd = random.Random(int(os.environ.get("TLCM_SEED", "0")) or None)
        kills = {"core": 0, "sat": 0}
        for r in range(rounds):
            time.sleep(rnd.uniform(0.1, 0.6))
            if rnd.random() < 0.4:
                core.kill9()
                kills["core"] += 1
                time.sleep(rnd.uniform(0.0, 0.4))
                core.start()
            else:
                s = rnd.choice(sats)
                if s.alive():
                    s.kill9()
                    kills["sat"] += 1
                    time.sleep(rnd.uniform(0.0, 0.2))
                    s.start()
        print(f"kill -9: core {kills['core']}, satellites {kills['sat']}",
              flush=True)
        finish_sats(sats, time.time() + 300)
        stop_core(core)
        rep = report(d)
        exact(rep, range(3), n, "tcp with kills")
        replays = sum(s["replays"] for s in rep["satellites"].values())
        print(f"replays skipped by the ledger: {replays}")
        if failures:
            os.system(f"tail -n 30 {d}/core.log {d}/sat*.log; grep -h -A24 "
                      f"'WARNING: ThreadSanitizer' {d}/*.log | head -80")


def openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_certs(d):
    ca_key, ca = f"{d}/ca.key", f"{d}/ca.pem"
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt",
            "ec_paramgen_curve:P-256", "-nodes", "-keyout", ca_key, "-out",
            ca, "-days", "2", "-subj", "/CN=tinylcm test CA")
    for name in ("server", "client"):
        openssl("req", "-newkey", "ec", "-pkeyopt",
                "ec_paramgen_curve:P-256", "-nodes", "-keyout",
                f"{d}/{name}.key", "-out", f"{d}/{name}.csr", "-subj",
                f"/CN={'localhost' if name == 'server' else 'sat-0'}")
        ext = f"{d}/{name}.ext"
        with open(ext, "w") as f:
            f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
        openssl("x509", "-req", "-in", f"{d}/{name}.csr", "-CA", ca,
                "-CAkey", ca_key, "-CAcreateserial", "-out",
                f"{d}/{name}.pem", "-days", "2", "-extfile", ext)


def scenario_tls(tl):
    n = 3000
    with tempfile.TemporaryDirectory() as d:
        make_certs(d)
        url = f"tls+tcp://127.0.0.1:{free_port()}"
        core = Proc(tl, core_yaml(
            d, url, f", tls_cert: {d}/server.pem, tls_key: {d}/server.key,"
            f" tls_ca: {d}/ca.pem, tls_require_client: true"),
            os.path.join(d, "core.log"))
        core.start()
        good = Proc(tl, sat_yaml(
            d, 0, url, n, 5000, f", tls_ca: {d}/ca.pem, tls_cert: "
            f"{d}/client.pem, tls_key: {d}/client.key, tls_server_name: "
            "localhost"), os.path.join(d, "sat0.log"))
        nocert = Proc(tl, sat_yaml(d, 1, url, 100, 1000,
                                   f", tls_ca: {d}/ca.pem, tls_server_name:"
                                   " localhost").replace(
                                       "linger: 120s", "linger: 2s"),
                      os.path.join(d, "sat1.log"))
        with open(nocert.graph) as f:
            g = f.read().replace("linger: 120s", "linger: 2s")
        with open(nocert.graph, "w") as f:
            f.write(g)
        good.start()
        nocert.start()
        finish_sats([good], time.time() + 120)
        nocert.p.wait(timeout=60)
        stop_core(core)
        rep = report(d)
        exact(rep, [0], n, "tls+tcp mutual TLS")
        check("sat-1" not in rep["satellites"],
              "a satellite without a client certificate got nothing in")
        with open(nocert.log) as f:
            log = f.read()
        check("cannot connect" in log or "lost" in log or "core" in log,
              "the refused satellite says why")


def scenario_bad_peer(tl):
    n = 3000
    with tempfile.TemporaryDirectory() as d:
        port, http = free_port(), free_port()
        url = f"tcp://127.0.0.1:{port}"
        core = Proc(tl, core_yaml(d, url, http=http),
                    os.path.join(d, "core.log"))
        core.start()
        good = Proc(tl, sat_yaml(d, 0, url, n, 3000),
                    os.path.join(d, "sat0.log"))
        good.start()
        time.sleep(0.3)
        closed = []
        for payload in (b"\x10\x00\x00\x00" + os.urandom(16),
                        b"GET / HTTP/1.1\r\n\r\n",
                        b"\xff\xff\xff\x7f"):
            for _ in range(50):
                try:
                    s = socket.create_connection(("127.0.0.1", port),
                                                 timeout=10)
                    break
                except OSError:
                    time.sleep(0.1)
            s.sendall(payload)
            got = b""
            s.settimeout(10)
            try:
                while True:
                    b = s.recv(4096)
                    if not b:
                        break
                    got += b
            except OSError:
                pass
            closed.append(True)
            s.close()
        check(len(closed) == 3, "every bad peer was disconnected")
        finish_sats([good], time.time() + 120)
        check_api(http, n)
        stop_core(core)
        exact(report(d), [0], n, "bad peers alongside")
        with open(core.log) as f:
            log = f.read()
        check(log.count("disconnecting") >= 3 and "127.0.0.1:" in log,
              "each bad peer is logged with its address and the reason")


def check_api(http, n):
    """GET /api/v1/satellites: admin only; the satellite with its hello
    and link figures."""
    import urllib.request
    import urllib.error
    url = f"http://127.0.0.1:{http}/api/v1/satellites"
    try:
        urllib.request.urlopen(url, timeout=10)
        check(False, "satellites without a token: refused")
    except urllib.error.HTTPError as e:
        check(e.code == 401, f"satellites without a token: 401, got {e.code}")
    req = urllib.request.Request(url, headers={
        "Authorization": f"Bearer {ADMIN}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        check(r.status == 200, "satellites: 200")
        body = json.load(r)
    sats = {s["id"]: s for s in body.get("satellites", [])}
    check(list(sats) == ["sat-0"], f"satellites listed: {list(sats)}")
    s = sats.get("sat-0", {})
    check(s.get("version") == "tinylcm" and s.get("profile") and
          s.get("cpus", 0) >= 1 and s.get("memory", 0) > 0,
          f"hello fields recorded: {s}")
    link = s.get("link", {})
    check(link.get("messages") == n and link.get("connects", 0) >= 1 and
          link.get("stored_seq", 0) >= 1 and s.get("last_seen_ns", 0) > 0,
          f"link figures: {link}")


def main():
    tl = sys.argv[1]
    rounds = int(os.environ.get("TLCM_LONG_ROUNDS", "6"))
    scenario_kills(tl, rounds)
    scenario_tls(tl)
    scenario_bad_peer(tl)
    print(f"{checks} checks, {failures} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/python3
"""headless_test.py — node types a graph does not use cost nothing.

usage: headless_test.py TINYLCM SOURCE_DIR

Runs graphs/satellite.yaml headless and reads the live process's
/proc/PID/maps: none of the on-demand node groups (tinylcm-*.so) nor
their libraries (XNNPACK, libpng, libjpeg, libcurl and its TLS stacks,
libsodium, libmodbus) are mapped, and nothing listens (no introspection
server). Then a graph with sensor.modbus: its group and libmodbus are
mapped, the others still are not. And `tinylcm nodes` still lists every
type (it loads every group).

Prints one line per failure, then `N passed, M failed`.
"""
import os
import subprocess
import sys
import tempfile
import time

# (mbed TLS and libzstd are not here: NNG and RocksDB, which the engine
# itself needs, load them)
HEAVY = ("libXNNPACK", "libpng", "libjpeg", "libcurl", "libsodium",
         "libmodbus", "libpthreadpool", "libcpuinfo", "libgnutls",
         "libssl")

MODBUS = """graph: mb
settings: { introspect: 'off', workers: 1 }
nodes:
  m: { type: sensor.modbus, params: { host: 127.0.0.1, port: 1,
       backoff_min: 1s, registers: ['tag=a kind=holding address=0'] } }
  out: { type: sink }
edges:
  - { from: m.out, to: out.in }
"""


class T:
    passed = failed = 0

    def ok(self, cond, what):
        if cond:
            self.passed += 1
        else:
            self.failed += 1
            print("FAIL:", what)


def running_maps(cmd, env=None):
    """Start cmd, wait for its start log line, return (maps, listening)."""
    e = dict(os.environ)
    e.update(env or {})
    p = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=e)
    try:
        deadline = time.monotonic() + 30  # a guard against hangs
        line = ""
        while "running" not in line and time.monotonic() < deadline:
            line = p.stderr.readline()
            if not line:
                break
        with open(f"/proc/{p.pid}/maps") as f:
            maps = f.read()
        inodes = set()
        for fd in os.listdir(f"/proc/{p.pid}/fd"):
            try:
                t = os.readlink(f"/proc/{p.pid}/fd/{fd}")
            except OSError:
                continue
            if t.startswith("socket:["):
                inodes.add(t[8:-1])
        listening = []
        for tab in ("tcp", "tcp6"):
            with open(f"/proc/{p.pid}/net/{tab}") as f:
                for row in f.readlines()[1:]:
                    col = row.split()
                    if col[3] == "0A" and col[9] in inodes:  # LISTEN
                        listening.append(col[1])
        return maps, listening
    finally:
        p.terminate()
        p.wait(timeout=30)


def main():
    binary, src = sys.argv[1], sys.argv[2]
    t = T()
    sat = os.path.join(src, "graphs", "satellite.yaml")
    maps, listening = running_maps([binary, "run", sat, "--headless"])
    for lib in HEAVY:
        t.ok(lib not in maps, f"satellite maps {lib}")
    t.ok("tinylcm-" not in maps.replace("/tinylcm ", ""),
         "satellite maps an on-demand group: " +
         ",".join(sorted({l.split()[-1] for l in maps.splitlines()
                          if "tinylcm-" in l})))
    t.ok(listening == [], f"satellite listens on {listening}")

    with tempfile.TemporaryDirectory() as d:
        g = os.path.join(d, "mb.yaml")
        with open(g, "w") as f:
            f.write(MODBUS)
        maps, _ = running_maps([binary, "run", g, "--headless"])
        t.ok("tinylcm-modbus.so" in maps, "modbus group not mapped")
        t.ok("libmodbus" in maps, "libmodbus not mapped")
        for lib in ("libcurl", "libXNNPACK", "tinylcm-net.so"):
            t.ok(lib not in maps, f"modbus graph maps {lib}")

    r = subprocess.run([binary, "nodes"], capture_output=True, text=True,
                       timeout=60)
    names = {l.split()[0] for l in r.stdout.splitlines() if l.strip()}
    t.ok(r.returncode == 0, f"nodes: {r.returncode} {r.stderr}")
    for n in ("sensor.sysfs", "sensor.modbus", "features.xnnpack",
              "capture.images", "packager", "uploader", "updater", "core"):
        t.ok(n in names, f"nodes lacks {n}")
    # a group that cannot be found: a clear error, not "unknown type"
    r = subprocess.run([binary, "check", sat, "--set",
                        "sensors.interval=1s"], capture_output=True,
                       text=True, timeout=60)
    t.ok(r.returncode == 0, f"check satellite: {r.stderr}")
    with tempfile.TemporaryDirectory() as d:
        g = os.path.join(d, "mb.yaml")
        with open(g, "w") as f:
            f.write(MODBUS)
        r = subprocess.run([binary, "check", g], capture_output=True,
                           text=True, timeout=60,
                           env=dict(os.environ, TINYLCM_MODULE_DIR=d))
        t.ok(r.returncode == 1 and "cannot load node group 'modbus'" in
             r.stderr and "TINYLCM_MODULE_DIR" in r.stderr,
             f"missing group: {r.returncode} {r.stderr}")
    print(f"{t.passed} passed, {t.failed} failed")
    return 1 if t.failed else 0


if __name__ == "__main__":
    sys.exit(main())

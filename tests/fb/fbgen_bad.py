#!/usr/bin/python3
"""fbgen_bad.py — tinylcm-fbgen against bad input.

Every bad schema must give exit status 1 and a message on stderr naming the
file, never a crash or a sanitizer report; usage errors give 2.
usage: fbgen_bad.py FBGEN GOOD.bfbs COLLIDE.bfbs DATA.bin SCHEMA.fbs
"""
import os
import random
import subprocess
import sys
import tempfile

failures = 0
checks = 0
ENV = dict(os.environ,
           ASAN_OPTIONS="exitcode=99:detect_leaks=0",
           UBSAN_OPTIONS="halt_on_error=1:exitcode=98:print_stacktrace=1")


def run(args, outdir):
    return subprocess.run(args + ["-o", outdir] if outdir else args,
                          capture_output=True, text=True, errors="replace",
                          env=ENV)


def check(cond, what):
    global failures, checks
    checks += 1
    if not cond:
        failures += 1
        print("FAIL:", what)


def sane(r, what):
    err = r.stderr
    check("Sanitizer" not in err and "runtime error" not in err,
          f"{what}: sanitizer report: {err[:400]}")
    check(r.returncode in (0, 1), f"{what}: exit status {r.returncode}")


def expect_bad(fbgen, path, outdir, fragment, what):
    r = run([fbgen, path], outdir)
    sane(r, what)
    check(r.returncode == 1, f"{what}: exit {r.returncode}, expected 1")
    check(os.path.basename(path) in r.stderr,
          f"{what}: message does not name the file: {r.stderr!r}")
    if fragment:
        check(fragment in r.stderr,
              f"{what}: message lacks {fragment!r}: {r.stderr!r}")


def main():
    fbgen, good, collide, data, schema = sys.argv[1:6]
    with open(good, "rb") as f:
        blob = f.read()
    with tempfile.TemporaryDirectory() as tmp:
        r = run([fbgen], None)
        check(r.returncode == 2 and "usage" in r.stderr, "no arguments")
        r = run([fbgen, "--bogus"], None)
        check(r.returncode == 2, "unknown option")
        r = run([fbgen, "--help"], None)
        check(r.returncode == 0 and "usage" in r.stdout, "--help")
        r = run([fbgen, "--version"], None)
        check(r.returncode == 0 and "tinylcm-fbgen" in r.stdout,
              "--version")

        r = run([fbgen, good], tmp)
        check(r.returncode == 0, f"good schema: {r.stderr}")
        stem = os.path.basename(good)[:-5]
        check(os.path.exists(os.path.join(tmp, stem + "_fb.h")),
              "good schema: header written")

        expect_bad(fbgen, os.path.join(tmp, "missing.bfbs"), tmp,
                   "cannot open", "missing file")
        empty = os.path.join(tmp, "empty.bfbs")
        open(empty, "wb").close()
        expect_bad(fbgen, empty, tmp, "too short", "empty file")
        expect_bad(fbgen, schema, tmp, "not a binary schema", "text schema")
        expect_bad(fbgen, data, tmp, "not a binary schema",
                   "data buffer instead of a schema")
        expect_bad(fbgen, collide, tmp, "defined twice", "name collision")
        r = run([fbgen, good], os.path.join(tmp, "no", "such", "dir"))
        check(r.returncode == 1 and "cannot create" in r.stderr,
              "unwritable output directory")

        mut = os.path.join(tmp, "mut.bfbs")
        lengths = sorted(set(list(range(0, 64)) +
                             list(range(64, len(blob), max(1, len(blob) // 97)))))
        for n in lengths:
            with open(mut, "wb") as f:
                f.write(blob[:n])
            expect_bad(fbgen, mut, tmp, None, f"truncated to {n} bytes")

        rnd = random.Random(1)
        accepted = 0
        for i in range(400):
            b = bytearray(blob)
            for _ in range(rnd.randint(1, 4)):
                b[rnd.randrange(len(b))] = rnd.choice(
                    [0, 0xff, 0x7f, 0x80, rnd.randrange(256)])
            with open(mut, "wb") as f:
                f.write(b)
            r = run([fbgen, mut], tmp)
            sane(r, f"mutation {i}")
            if r.returncode == 1:
                check("mut.bfbs" in r.stderr, f"mutation {i}: message "
                      f"does not name the file: {r.stderr!r}")
            accepted += r.returncode == 0
        print(f"mutations: {400 - accepted} rejected, {accepted} accepted")
        leftovers = [f for f in os.listdir(tmp) if ".tmp." in f]
        check(not leftovers, f"temporary files left behind: {leftovers}")
    print(f"{checks} checks, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

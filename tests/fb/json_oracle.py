#!/usr/bin/python3
"""json_oracle.py — flatc judges buffers made by our builder.

Decodes BIN with `flatc --json --strict-json --raw-binary` and compares the
result with EXPECTED (a JSON file) as data: same keys, same values, with
numbers compared exactly. Exits 0 when equal, 1 with a list of differences.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile


def diff(a, b, path, out):
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a:
                out.append(f"{path}.{k}: missing in flatc output (expected {b[k]!r})")
            elif k not in b:
                out.append(f"{path}.{k}: unexpected in flatc output ({a[k]!r})")
            else:
                diff(a[k], b[k], f"{path}.{k}", out)
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            out.append(f"{path}: {len(a)} elements, expected {len(b)}")
        for i, (x, y) in enumerate(zip(a, b)):
            diff(x, y, f"{path}[{i}]", out)
    elif type(a) is bool or type(b) is bool:
        if a is not b:
            out.append(f"{path}: {a!r}, expected {b!r}")
    elif a != b:
        out.append(f"{path}: {a!r}, expected {b!r}")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--flatc", required=True)
    p.add_argument("--schema", required=True)
    p.add_argument("--include", default=None)
    p.add_argument("--bin", required=True)
    p.add_argument("--expected", required=True)
    p.add_argument("--size-prefixed", action="store_true")
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [a.flatc, "--json", "--strict-json", "--raw-binary", "-o", tmp]
        if a.size_prefixed:
            cmd.append("--size-prefixed")
        if a.include:
            cmd += ["-I", a.include]
        cmd += [a.schema, "--", a.bin]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            print(f"flatc rejected {a.bin}: {r.stderr.strip()}")
            return 1
        stem = os.path.splitext(os.path.basename(a.bin))[0]
        with open(os.path.join(tmp, stem + ".json")) as f:
            got = json.load(f)
    with open(a.expected) as f:
        want = json.load(f)
    out = []
    diff(got, want, "$", out)
    for line in out:
        print(line)
    print(f"{a.bin}: {'matches' if not out else 'DIFFERS from'} {a.expected}"
          f" ({len(out)} differences)")
    return 1 if out else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/python3
"""gen_river_stream.py — writes river_stream.txt, the stream of river's
drift-detector docstrings: random.Random(12345), choices([0, 1], k=1000)
then choices(range(4, 8), k=1000) from the same generator; one integer a
line. Run with Debian's /usr/bin/python3; the output is committed.

    gen_river_stream.py [FILE]          write FILE (river_stream.txt)
    gen_river_stream.py --check FILE    exit 1 unless FILE is that stream
"""
import random
import sys


def stream_text():
    rng = random.Random(12345)
    stream = rng.choices([0, 1], k=1000) + rng.choices(range(4, 8), k=1000)
    return "".join(f"{v}\n" for v in stream)


def main(argv):
    if len(argv) == 3 and argv[1] == "--check":
        with open(argv[2]) as f:
            if f.read() != stream_text():
                print(f"{argv[2]}: not the stream of random.Random(12345)",
                      file=sys.stderr)
                return 1
        return 0
    with open(argv[1] if len(argv) > 1 else "river_stream.txt", "w") as f:
        f.write(stream_text())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

"""`python -m harpagon.bench.live send SPEC OUT`: the bench's load generator, a process of its own."""

from __future__ import annotations

import sys

from harpagon.bench.live.load import sender_main

if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "send":
        sender_main(sys.argv[2], sys.argv[3])
    else:
        print("usage: python -m harpagon.bench.live send SPEC OUT (the bench's load generator)", file=sys.stderr)
        sys.exit(2)

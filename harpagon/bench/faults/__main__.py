"""`python -m harpagon.bench.faults`: the suite, or one of the processes it starts."""

from __future__ import annotations

import sys

from harpagon.bench.faults.cli import main

if __name__ == "__main__":
    sys.exit(main())

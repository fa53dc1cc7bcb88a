"""`python -m harpagon ...`: the `harpagon` command, as `harpagon serve` starts its workers and frontends.

A child stopped while it still starts (serve drains a moment after starting it) exits 130 quietly, not
with a KeyboardInterrupt traceback from whichever import it was in: the handler is set before the
command's imports, which take most of a start (`python -m harpagon.cli` imports them first). The
long-running commands install their own handlers once up.
"""

import signal
import sys

signal.signal(signal.SIGINT, lambda *_: sys.exit(130))

from harpagon.cli import main  # noqa: E402  (after the handler)

sys.exit(main())

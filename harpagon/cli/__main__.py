"""`python -m harpagon.cli ...`: the `harpagon` command, as the components start each other."""

import sys

from harpagon.cli import main

sys.exit(main())

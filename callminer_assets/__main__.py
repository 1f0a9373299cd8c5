"""``python -m callminer_assets``: see :mod:`callminer_assets.cli`."""

import sys

from callminer_assets.cli import main

if __name__ == "__main__":  # not when a spawned child process re-imports it
    sys.exit(main())

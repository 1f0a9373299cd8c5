"""``python -m callminer_assets``: see :mod:`callminer_assets.cli`."""

import sys

from callminer_assets.cli import main

sys.exit(main())

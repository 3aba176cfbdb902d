"""Entry point of `python -m kiln.bench`."""

import sys

from .cli import main

sys.exit(main())

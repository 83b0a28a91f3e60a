"""`python -m sensing_edge` is `sensing-edge`."""

import sys

from .cli import main

sys.exit(main())

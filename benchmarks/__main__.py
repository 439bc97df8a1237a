"""``python -m benchmarks SCENARIO.toml [--quick] [--out DIR]``."""

import sys

from .cli import main

sys.exit(main())

"""``python -m ferricorn ARGS`` is the ``ferricorn`` command."""

import sys

from ferricorn.cli import main

sys.exit(main())

"""``python -m patchforensics``: the command line (``patchforensics.cli``)."""

import sys

from .cli import main

sys.exit(main())

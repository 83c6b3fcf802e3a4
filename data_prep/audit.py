"""Audit a real and a fake folder for container leaks: ``python data_prep/audit.py REAL FAKE``.

Same as ``patchforensics audit``; see data_prep/README.md.
"""

import sys

from patchforensics.cli import main

if __name__ == "__main__":
    sys.exit(main(["audit", *sys.argv[1:]]))

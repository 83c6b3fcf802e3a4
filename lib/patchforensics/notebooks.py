"""Running the notebook series headless with papermill (``make reproduce``, the tests).

Notebooks run on the project's own kernelspec ``patchforensics`` (installed into the venv by
``make setup``), so papermill never picks up another environment's ``python3``. Executed copies
go to ``results/notebooks``; a failure names the notebook and leaves earlier results intact.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from . import paths

KERNEL = "patchforensics"
SERIES = ("01_preprocessing", "02_train_classifiers", "03_evaluate_generalization",
          "04_face_parts", "05_finetune_generator", "06_exaggerate_fakeness")


def notebook_path(name: str) -> Path:
    path = paths.notebooks_src_dir() / f"{name}.ipynb"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such notebook")
    return path


def run_notebook(name: str, out_dir: str | os.PathLike, parameters: dict[str, Any], *,
                 kernel: str = KERNEL, cell_timeout: int = 3600, progress: bool = False) -> Path:
    """Execute notebook ``name`` with ``parameters`` into ``out_dir``; returns the output path.

    Raises ``RuntimeError`` naming the notebook and the failing cell when a cell fails.
    """
    import papermill as pm

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{name}.ipynb"
    try:
        pm.execute_notebook(str(notebook_path(name)), str(target), parameters=parameters,
                            kernel_name=kernel, cwd=str(paths.root()),
                            execution_timeout=cell_timeout, progress_bar=progress)
    except pm.PapermillExecutionError as err:
        raise RuntimeError(f"notebook {name} failed in cell {err.exec_count}: {err.ename}: "
                           f"{err.evalue} (executed copy: {target})") from err
    return target


def run_series(*, smoke: bool = False, only: list[str] | None = None,
               out_dir: str | os.PathLike | None = None) -> list[Path]:
    """Run the series in order (or only the named notebooks); one progress line per notebook."""
    out = Path(out_dir) if out_dir is not None else paths.results_dir() / "notebooks"
    names = [n for n in SERIES if not only or any(n.startswith(o) for o in only)]
    if only and not names:
        raise ValueError(f"no notebook matches {only}; the series is {SERIES}")
    written = []
    for name in names:
        t0 = time.perf_counter()
        print(f"[{name}] running (smoke={smoke}) ...", flush=True)
        written.append(run_notebook(name, out, {"smoke": smoke, "interactive": False}))
        print(f"[{name}] done in {time.perf_counter() - t0:.0f} s -> {written[-1]}", flush=True)
    return written

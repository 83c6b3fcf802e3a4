"""Running the notebook series headless with papermill (``make reproduce``, the tests).

- Notebooks run on the project's own kernelspec ``patchforensics`` (installed into the venv by
  ``make setup``), so papermill never picks up another environment's ``python3``.
- Executed copies go to ``results/notebooks``; a finished notebook leaves ``<name>.done.json``
  (parameters, SHA-256 of the source notebook, seconds) and a rerun skips it unless forced. A
  failure names the notebook and the failing cell and leaves earlier notebooks' results intact.
- **The hang fix.** Measured on this machine, notebooks with ipywidgets ``Output`` widgets lost
  the kernel's ``execute_reply`` in 2-16 % of headless runs and nbclient then waited forever
  for it (jupyter/nbclient#312). Our client polls the shell channel with a bounded timeout
  (``POLL_S``) in a loop instead of one unbounded wait, which removed the hangs (0 in 160 runs),
  and the same loop enforces the per-cell and the per-notebook time limits.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from queue import Empty
from typing import Any

from . import paths

KERNEL = "patchforensics"
SERIES = ("01_preprocessing", "02_train_classifiers", "03_evaluate_generalization",
          "04_face_parts", "05_finetune_generator", "06_exaggerate_fakeness")
POLL_S = 1.0  # longest single wait on the kernel's shell channel
CELL_TIMEOUT_S = 3600  # default per-cell limit (the slowest default cell trains for ~10 min)
NOTEBOOK_TIMEOUT_S = 3 * 3600  # default per-notebook limit


class NotebookTimeout(RuntimeError):
    """A cell or a whole notebook ran past its time limit."""


def notebook_path(name: str) -> Path:
    path = paths.notebooks_src_dir() / f"{name}.ipynb"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such notebook")
    return path


def _engine_name() -> str:
    """Register (once) and name the papermill engine that uses :class:`_client_class`."""
    from papermill.engines import NBClientEngine, papermill_engines

    if "patchforensics" not in papermill_engines._engines:

        class Engine(NBClientEngine):
            @classmethod
            def execute_managed_notebook(cls, nb_man, kernel_name, log_output=False,
                                         stdout_file=None, stderr_file=None, start_timeout=60,
                                         execution_timeout=None, **kwargs):
                kwargs.pop("input_path", None)
                notebook_timeout = kwargs.pop("notebook_timeout", None)
                client = _client_class()(
                    nb_man, timeout=execution_timeout, startup_timeout=start_timeout,
                    kernel_name=kernel_name, log_output=log_output, stdout_file=stdout_file,
                    stderr_file=stderr_file, **kwargs)
                client.notebook_deadline = (time.monotonic() + notebook_timeout
                                            if notebook_timeout else None)
                client.notebook_timeout = notebook_timeout
                return client.execute()

        papermill_engines.register("patchforensics", Engine)
    return "patchforensics"


def _client_class() -> type:
    """papermill's client with the bounded shell-channel poll (see the module docstring)."""
    from nbclient.client import timestamp
    from nbclient.exceptions import CellTimeoutError
    from nbclient.util import ensure_async
    from papermill.clientwrap import PapermillNotebookClient

    class PollingClient(PapermillNotebookClient):
        notebook_deadline: float | None = None
        notebook_timeout: float | None = None

        async def _async_poll_for_reply(self, msg_id, cell, timeout, task_poll_output_msg,
                                        task_poll_kernel_alive):
            cell_deadline = time.monotonic() + timeout if timeout is not None else None
            code = [c for c in self.nb.cells if c.cell_type == "code"]
            k = next((n for n, c in enumerate(code, start=1) if c is cell), "?")
            while True:
                now = time.monotonic()
                if self.notebook_deadline is not None and now >= self.notebook_deadline:
                    task_poll_kernel_alive.cancel()
                    raise NotebookTimeout(f"stopped in cell {k}: the notebook ran past its "
                                          f"limit of {self.notebook_timeout:g} s")
                if cell_deadline is not None and now >= cell_deadline:
                    task_poll_kernel_alive.cancel()
                    raise NotebookTimeout(f"cell {k} ran past its limit of {timeout:g} s")
                try:
                    msg = await ensure_async(self.kc.shell_channel.get_msg(timeout=POLL_S))
                except Empty:
                    await self._async_check_alive()  # raises DeadKernelError if it died
                    continue
                if msg["parent_header"].get("msg_id") != msg_id:
                    continue
                if self.record_timing:
                    cell["metadata"]["execution"]["shell.execute_reply"] = timestamp(msg)
                try:
                    await asyncio.wait_for(task_poll_output_msg, self.iopub_timeout)
                except (TimeoutError, Empty):
                    if self.raise_on_iopub_timeout:
                        task_poll_kernel_alive.cancel()
                        raise CellTimeoutError.error_from_timeout_and_cell(
                            "Timeout waiting for IOPub output", self.iopub_timeout, cell
                        ) from None
                    self.log.warning("Timeout waiting for IOPub output")
                task_poll_kernel_alive.cancel()
                return msg

    return PollingClient


def _failed_cell(executed: Path) -> int | None:
    """1-based index (among code cells) of the cell papermill was running or that raised."""
    try:
        nb = json.loads(executed.read_text())
    except (OSError, ValueError):
        return None
    code = [c for c in nb.get("cells", []) if c.get("cell_type") == "code"]
    for k, cell in enumerate(code, start=1):
        meta = cell.get("metadata", {}).get("papermill", {})
        if meta.get("exception") or meta.get("status") == "running":
            return k
    return None


def run_notebook(name: str, out_dir: str | os.PathLike, parameters: dict[str, Any], *,
                 kernel: str = KERNEL, cell_timeout: float | None = CELL_TIMEOUT_S,
                 notebook_timeout: float | None = NOTEBOOK_TIMEOUT_S, progress: bool = False,
                 source: str | os.PathLike | None = None) -> Path:
    """Execute notebook ``name`` (``notebooks/<name>.ipynb``, or ``source``) with
    ``parameters`` into ``out_dir``; returns the executed copy's path.

    Raises ``RuntimeError`` naming the notebook and the failing cell when a cell fails, and
    :class:`NotebookTimeout` when a cell runs past ``cell_timeout`` s or the notebook past
    ``notebook_timeout`` s (the kernel is shut down; nothing waits forever)."""
    import papermill as pm
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{name}.ipynb"
    src = Path(source) if source is not None else notebook_path(name)
    try:
        pm.execute_notebook(str(src), str(target), parameters=parameters, kernel_name=kernel,
                            cwd=str(paths.root()), execution_timeout=cell_timeout,
                            progress_bar=progress, engine_name=_engine_name(),
                            notebook_timeout=notebook_timeout)
    except pm.PapermillExecutionError as err:
        raise RuntimeError(f"notebook {name} failed in cell {err.exec_count}: {err.ename}: "
                           f"{err.evalue} (executed copy: {target})") from err
    except NotebookTimeout as err:
        raise NotebookTimeout(f"notebook {name}: {err} (executed copy: {target})") from err
    except CellTimeoutError as err:  # nbclient's own (IOPub) timeouts
        raise NotebookTimeout(f"notebook {name}: cell {_failed_cell(target)}: {err} "
                              f"(executed copy: {target})") from err
    except DeadKernelError as err:
        raise RuntimeError(f"notebook {name}: the kernel died in cell {_failed_cell(target)} "
                           f"({err}; executed copy: {target})") from err
    return target


def _done_path(out_dir: Path, name: str) -> Path:
    return out_dir / f"{name}.done.json"


def finished_notebook(out_dir: str | os.PathLike, name: str,
                      parameters: dict[str, Any]) -> dict[str, Any] | None:
    """The done record of ``name`` in ``out_dir`` if it ran to the end with these parameters
    from the current source notebook (and its executed copy is there), else None."""
    from .images import sha256_file

    out_dir = Path(out_dir)
    done = _done_path(out_dir, name)
    if not done.exists() or not (out_dir / f"{name}.ipynb").exists():
        return None
    try:
        record = json.loads(done.read_text())
    except ValueError:
        return None
    if (record.get("parameters") != parameters
            or record.get("source_sha256") != sha256_file(notebook_path(name))):
        return None
    return record


def run_series(*, smoke: bool = False, only: list[str] | None = None,
               out_dir: str | os.PathLike | None = None, force: bool = False,
               cell_timeout: float | None = CELL_TIMEOUT_S,
               notebook_timeout: float | None = NOTEBOOK_TIMEOUT_S,
               report: bool = True) -> list[Path]:
    """Run the series in order (or only the named notebooks, e.g. ``["03"]``), one progress
    line per notebook; skip notebooks finished with the same parameters and source unless
    ``force``; write ``results/REPORT.md`` at the end (``report``). A failure raises after
    naming the notebook and cell; notebooks before it keep their results."""
    from .images import atomic_write_text, sha256_file
    from .provenance import run_record

    out = Path(out_dir) if out_dir is not None else paths.results_dir() / "notebooks"
    names = [n for n in SERIES if not only or any(n.startswith(o) for o in only)]
    if only and not names:
        raise ValueError(f"no notebook matches {only}; the series is {SERIES}")
    params = {"smoke": smoke, "interactive": False}
    written = []
    for n, name in enumerate(names, start=1):
        tag = f"[{n}/{len(names)} {name}]"
        done = None if force else finished_notebook(out, name, params)
        if done is not None:
            print(f"{tag} finished earlier in {done['seconds']:.0f} s; skipped "
                  "(--force reruns it)", flush=True)
            written.append(out / f"{name}.ipynb")
            continue
        _done_path(out, name).unlink(missing_ok=True)
        print(f"{tag} running (smoke={smoke}) ...", flush=True)
        t0 = time.perf_counter()
        try:
            target = run_notebook(name, out, params, cell_timeout=cell_timeout,
                                  notebook_timeout=notebook_timeout)
        except Exception:
            print(f"{tag} FAILED after {time.perf_counter() - t0:.0f} s", flush=True)
            raise
        seconds = time.perf_counter() - t0
        atomic_write_text(_done_path(out, name), json.dumps(
            {"notebook": name, "parameters": params, "seconds": round(seconds, 1),
             "source_sha256": sha256_file(notebook_path(name)), "provenance": run_record()},
            indent=1))
        print(f"{tag} done in {seconds:.0f} s -> {target}", flush=True)
        written.append(target)
    if report:
        from .report import write_report

        print(f"report: {write_report(smoke=smoke)}", flush=True)
    return written

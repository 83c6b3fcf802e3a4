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
  and the same loop enforces the limits below and answers signals.
- **Slow is not stuck.** A cell is stopped when the kernel has sent nothing for it on IOPub
  (no output, no widget message, no heartbeat from :mod:`patchforensics.progress`) for
  ``stall_timeout`` s: a slow machine that keeps making progress is never stopped, a silent
  hang is. The kernels get ``PATCHFORENSICS_HEARTBEAT`` so every library loop reports at least
  every few seconds; the runner shows those heartbeats live and removes them from the executed
  copy. A whole-notebook cap and an optional per-cell cap remain as backstops.
- **Stopping.** SIGINT or SIGTERM to the runner interrupts the kernel, shuts it down within a
  few seconds and ends with one line (:class:`NotebookInterrupted`); a stop or a failure is one
  line naming the notebook, the cell and its first source line, the executed copy and the log.
  Training loops checkpoint as they go, so a stop loses only the steps since the last one.
- **Quiet terminal.** The kernel's own stderr (its "TCP without encryption" warning, absl
  lines), the notebook's printed output and papermill's logging go to
  ``results/logs/<notebook>.log``; the terminal shows only the runner's lines.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from queue import Empty
from typing import IO, Any

from . import paths
from . import progress as heartbeat
from .estimate import calibrate, estimate_seconds, projected

KERNEL = "patchforensics"
POLL_S = 1.0  # longest single wait on the kernel's shell channel (and signal latency)
STALL_TIMEOUT_S = 600.0  # default no-progress limit: a cell silent this long is stopped
NOTEBOOK_TIMEOUT_S = 8 * 3600.0  # default cap per notebook (a backstop, far above any budget)
CELL_TIMEOUT_S: float | None = None  # default hard cap per cell: none (the stall limit decides)
GRACE_S = 3.0  # after an interrupt, how long the cell may take to stop before the kill
STATUS_EVERY_S = 30.0  # a progress line at least this often while a cell runs
MIN_GAP_S = 5.0  # and never more often than this
MAX_HEARTBEAT_S = 20.0  # heartbeat interval asked of the kernels (smaller for short limits)



class NotebookError(RuntimeError):
    """A notebook failed or was stopped; ``str()`` is the one line to print."""


class NotebookTimeout(NotebookError):
    """A cell made no progress for the stall limit, or ran past a hard cap."""


class NotebookInterrupted(NotebookError):
    """The runner got SIGINT or SIGTERM (``signum``) and stopped the kernel."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum


def series() -> tuple[str, ...]:
    """The series: the notebooks folder's ``NN_name.ipynb``, in number order (a notebook joins
    by being there; none is listed by hand)."""
    return tuple(sorted(p.stem for p in paths.notebooks_src_dir().glob("[0-9][0-9]_*.ipynb")))


def notebook_path(name: str) -> Path:
    path = paths.notebooks_src_dir() / f"{name}.ipynb"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such notebook")
    return path


def first_line(source: str, width: int = 60) -> str:
    """The first non-blank line of a cell's source, shortened to ``width`` characters."""
    line = next((s.strip() for s in source.splitlines() if s.strip()), "")
    return line if len(line) <= width else line[: width - 3] + "..."


def clock(seconds: float) -> str:
    """``m:ss`` (or ``h:mm:ss``) for a duration in seconds."""
    s = max(int(round(seconds)), 0)
    h, m = divmod(s // 60, 60)
    return f"{h}:{m:02d}:{s % 60:02d}" if h else f"{m}:{s % 60:02d}"


# --- signals ----------------------------------------------------------------------------------

_stop: dict[str, Any] = {"signum": None, "depth": 0}


def stop_signal() -> int | None:
    """The signal that asked the runner to stop, if one arrived."""
    return _stop["signum"]


def _on_signal(signum: int, frame: Any) -> None:
    if _stop["signum"] is not None:  # a second signal: stop waiting for the graceful stop
        raise KeyboardInterrupt
    _stop["signum"] = signum  # the poll loop sees it within POLL_S and stops the kernel


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """While inside, SIGINT and SIGTERM only set a flag that the runner acts on (interrupt and
    shut down the kernel, then :class:`NotebookInterrupted`); nestable; main thread only."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if _stop["depth"] == 0:
        _stop["signum"] = None
        saved = {s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    _stop["depth"] += 1
    try:
        yield
    finally:
        _stop["depth"] -= 1
        if _stop["depth"] == 0:
            for s, handler in saved.items():
                signal.signal(s, handler)
            _stop["signum"] = None


# --- live progress on the terminal ------------------------------------------------------------

class LiveProgress:
    """Prints the runner's progress lines for one notebook: the running cell (number/total and
    first line), the elapsed time and the latest heartbeat of a long loop (desc, step/total,
    time left). One line per event, at most every ``min_gap`` s, at least every ``every`` s
    while a cell runs; every line is also written to ``log``."""

    def __init__(self, tag: str, echo: Callable[[str], None] | None = None,
                 log: IO[str] | None = None, *, every: float = STATUS_EVERY_S,
                 min_gap: float = MIN_GAP_S) -> None:
        self.tag, self.log, self.every, self.min_gap = tag, log, every, min_gap
        self.echo = echo if echo is not None else (lambda line: print(line, flush=True))
        self.start = time.monotonic()
        self.cell: tuple[int, int, str] | None = None
        self.beat: tuple[dict[str, Any], float] | None = None
        self.last = -float("inf")
        self.pending = False

    def to_log(self, text: str) -> None:
        if self.log is not None:
            self.log.write(f"[runner {time.strftime('%H:%M:%S')}] {text}\n")
            self.log.flush()

    def cell_started(self, k: int, n: int, line: str) -> None:
        self.cell, self.beat, self.pending = (k, n, line), None, True
        self.tick()

    def heartbeat(self, record: dict[str, Any]) -> None:
        self.beat, self.pending = (record, time.monotonic()), True
        self.to_log(heartbeat.PREFIX + json.dumps(record))
        self.tick()

    def line(self) -> str:
        now = time.monotonic()
        text = f"{self.tag}"
        if self.cell is not None:
            k, n, first = self.cell
            text += f" cell {k}/{n} ({first})"
        text += f" {clock(now - self.start)} elapsed"
        if self.beat is not None:
            rec, at = self.beat
            total = rec.get("total")
            text += f" | {rec.get('desc') or 'loop'} {rec.get('step')}" + (
                f"/{total}" if total is not None else "")
            if rec.get("eta") is not None:
                text += f", about {clock(max(rec['eta'] - (now - at), 0))} left"
        return text

    def tick(self) -> None:
        now = time.monotonic()
        if (self.pending and now - self.last >= self.min_gap) or (
                self.cell is not None and now - self.last >= self.every):
            text = self.line()
            self.echo(text)
            self.to_log(text)
            self.last, self.pending = now, False


# --- the papermill engine and client ----------------------------------------------------------

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
                guard = kwargs.pop("guard")
                kernel_kwargs = kwargs.pop("kernel_kwargs", {})
                client = _client_class()(
                    nb_man, timeout=execution_timeout, startup_timeout=start_timeout,
                    kernel_name=kernel_name, log_output=log_output, stdout_file=stdout_file,
                    stderr_file=stderr_file, **kwargs)
                client.guard = guard
                return client.execute(**kernel_kwargs)

        papermill_engines.register("patchforensics", Engine)
    return "patchforensics"


class _Guard:
    """What the client needs from the runner: limits, the live printer, the stop state."""

    def __init__(self, stall_timeout: float | None, notebook_timeout: float | None,
                 live: LiveProgress | None) -> None:
        self.stall_timeout = stall_timeout
        self.notebook_timeout = notebook_timeout
        self.deadline = time.monotonic() + notebook_timeout if notebook_timeout else None
        self.live = live
        self.cell: tuple[int, int, str] = (0, 0, "")
        self.cell_started = time.monotonic()


def _without_heartbeats(text: str, live: Any) -> str:
    """A cell's stream text with the heartbeat lines taken out (each reported to ``live``
    when given); what a line held before its heartbeat is kept."""
    keep = []
    for line in text.splitlines(keepends=True):
        record = heartbeat.parse_heartbeat(line)
        if record is None:
            keep.append(line)
            continue
        if live is not None:
            live.heartbeat(record)
        before = line[: line.find(heartbeat.PREFIX)]
        if before.strip():
            keep.append(before + "\n")
    return "".join(keep)


def _stop_reason(g: _Guard, signum: int | None, cell_deadline: float | None,
                 timeout: float | None, last_activity: float) -> tuple[str | None, type]:
    """Why the running cell must stop now, and as what (``NotebookInterrupted`` for a
    signal, else ``NotebookTimeout``); ``(None, NotebookTimeout)`` while it may go on."""
    now = time.monotonic()
    if signum is not None:
        return f"stopped by {signal.Signals(signum).name}", NotebookInterrupted
    if g.deadline is not None and now >= g.deadline:
        return f"the notebook ran past its limit of {g.notebook_timeout:g} s", NotebookTimeout
    if cell_deadline is not None and now >= cell_deadline:
        return f"the cell ran past its limit of {timeout:g} s", NotebookTimeout
    if g.stall_timeout and now - last_activity >= g.stall_timeout:
        return f"no output and no heartbeat for {g.stall_timeout:g} s", NotebookTimeout
    return None, NotebookTimeout


async def _stop_cell(client: Any, task_poll_output_msg: Any, task_poll_kernel_alive: Any
                     ) -> None:
    """Interrupt the kernel, give the cell GRACE_S to finish (so the executed copy shows
    where it stopped), then let the cleanup kill the kernel at once."""
    from nbclient.util import ensure_async

    client.shutdown_kernel = "immediate"
    task_poll_kernel_alive.cancel()
    with contextlib.suppress(Exception):
        await ensure_async(client.km.interrupt_kernel())
    with contextlib.suppress(BaseException):
        await asyncio.wait_for(asyncio.shield(task_poll_output_msg), GRACE_S)
    task_poll_output_msg.cancel()
    await asyncio.gather(task_poll_output_msg, task_poll_kernel_alive, return_exceptions=True)


async def _await_output(client: Any, msg: dict[str, Any], cell: Any, task_poll_output_msg: Any,
                        task_poll_kernel_alive: Any) -> None:
    """After the cell's reply: record its time and wait for its last output, as nbclient's
    own poll does."""
    from nbclient.client import timestamp
    from nbclient.exceptions import CellTimeoutError

    if client.record_timing:
        cell["metadata"]["execution"]["shell.execute_reply"] = timestamp(msg)
    try:
        await asyncio.wait_for(task_poll_output_msg, client.iopub_timeout)
    except (TimeoutError, Empty):
        if client.raise_on_iopub_timeout:
            task_poll_kernel_alive.cancel()
            raise CellTimeoutError.error_from_timeout_and_cell(
                "Timeout waiting for IOPub output", client.iopub_timeout, cell) from None
        client.log.warning("Timeout waiting for IOPub output")
    task_poll_kernel_alive.cancel()


def _client_class() -> type:
    """papermill's client with the bounded shell-channel poll, the no-progress limit, signal
    handling and heartbeat forwarding (see the module docstring)."""
    from nbclient.util import ensure_async
    from papermill.clientwrap import PapermillNotebookClient

    class PollingClient(PapermillNotebookClient):
        guard: _Guard
        last_activity: float = 0.0

        def process_message(self, msg, cell, cell_index):
            self.last_activity = time.monotonic()  # any IOPub message of the cell is progress
            content = msg.get("content", {})
            if msg.get("msg_type") == "stream" and heartbeat.PREFIX in content.get("text", ""):
                text = _without_heartbeats(content["text"], self.guard.live)
                if not text:
                    return None  # only heartbeats: kept out of the executed copy
                msg = {**msg, "content": {**content, "text": text}}
            return super().process_message(msg, cell, cell_index)

        async def _async_poll_for_reply(self, msg_id, cell, timeout, task_poll_output_msg,
                                        task_poll_kernel_alive):
            g = self.guard
            code = [c for c in self.nb.cells if c.cell_type == "code"]
            k = next((n for n, c in enumerate(code, start=1) if c is cell), 0)
            g.cell, g.cell_started = (k, len(code), first_line(cell.source)), time.monotonic()
            self.last_activity = g.cell_started
            if g.live is not None:
                g.live.cell_started(*g.cell)
            cell_deadline = g.cell_started + timeout if timeout is not None else None
            while True:
                signum = stop_signal()
                why, kind = _stop_reason(g, signum, cell_deadline, timeout, self.last_activity)
                if why is not None:
                    await _stop_cell(self, task_poll_output_msg, task_poll_kernel_alive)
                    if kind is NotebookInterrupted:
                        raise NotebookInterrupted(why, signum)
                    raise NotebookTimeout(why)
                if g.live is not None:
                    g.live.tick()
                try:
                    msg = await ensure_async(self.kc.shell_channel.get_msg(timeout=POLL_S))
                except Empty:
                    await self._async_check_alive()  # raises DeadKernelError if it died
                    continue
                if msg["parent_header"].get("msg_id") != msg_id:
                    continue
                await _await_output(self, msg, cell, task_poll_output_msg,
                                    task_poll_kernel_alive)
                return msg

    return PollingClient


@contextlib.contextmanager
def _logs_to(stream: IO[str]) -> Iterator[None]:
    """Send papermill's, nbclient's, jupyter_client's and asyncio's logging and Python
    warnings to ``stream`` (the notebook's log file) instead of the terminal."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("[%(name)s %(levelname)s] %(message)s"))
    saved = []
    for name in ("papermill", "nbclient", "traitlets", "jupyter_client", "asyncio",
                 "py.warnings"):
        logger = logging.getLogger(name)
        saved.append((logger, logger.handlers[:], logger.propagate, logger.level))
        logger.handlers, logger.propagate = [handler], False
        logger.setLevel(logging.INFO)
    showwarning = warnings.showwarning
    logging.captureWarnings(True)
    try:
        yield
    finally:
        logging.captureWarnings(False)
        warnings.showwarning = showwarning
        for logger, handlers, propagate, level in saved:
            logger.handlers, logger.propagate = handlers, propagate
            logger.setLevel(level)


def log_path(name: str, log_dir: str | os.PathLike | None = None) -> Path:
    """Where the run of notebook ``name`` logs: ``results/logs/<name>.log`` by default."""
    return Path(log_dir if log_dir is not None else paths.results_dir() / "logs") / f"{name}.log"


def run_notebook(name: str, out_dir: str | os.PathLike, parameters: dict[str, Any], *,
                 kernel: str = KERNEL, stall_timeout: float | None = STALL_TIMEOUT_S,
                 cell_timeout: float | None = CELL_TIMEOUT_S,
                 notebook_timeout: float | None = NOTEBOOK_TIMEOUT_S,
                 live: LiveProgress | None = None, source: str | os.PathLike | None = None,
                 log_dir: str | os.PathLike | None = None) -> Path:
    """Execute notebook ``name`` (``notebooks/<name>.ipynb``, or ``source``) with
    ``parameters`` into ``out_dir``; returns the executed copy's path.

    The kernel's stderr, the notebook's output and papermill's logging go to
    :func:`log_path`; ``live`` (if given) prints progress lines. Raises, each with a one-line
    message naming the notebook, the cell (number and first source line), the executed copy
    and the log: :class:`NotebookError` when a cell fails or the kernel dies,
    :class:`NotebookTimeout` when a cell makes no progress for ``stall_timeout`` s, runs past
    ``cell_timeout`` s or the notebook past ``notebook_timeout`` s (None or 0: no limit), and
    :class:`NotebookInterrupted` on SIGINT/SIGTERM. The kernel is shut down in every case."""
    import papermill as pm
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{name}.ipynb"
    src = Path(source) if source is not None else notebook_path(name)
    log = log_path(name, log_dir)
    log.parent.mkdir(parents=True, exist_ok=True)
    guard = _Guard(stall_timeout or None, notebook_timeout or None, live)
    beat_s = MAX_HEARTBEAT_S if not stall_timeout else min(MAX_HEARTBEAT_S, stall_timeout / 4)
    env = {**os.environ, heartbeat.ENV: f"{beat_s:g}"}

    def fail(kind: type[NotebookError], why: str, err: BaseException | None = None) -> None:
        line = _failure_line(name, guard.cell, kind, why, f"executed copy: {target}; log: {log}")
        with contextlib.suppress(OSError, ValueError):
            print(f"[runner {time.strftime('%H:%M:%S')}] {line}", file=logf, flush=True)
        if kind is NotebookInterrupted:
            raise NotebookInterrupted(line, getattr(err, "signum", signal.SIGINT)) from None
        raise kind(line) from None

    with open(log, "w") as logf, stop_on_signals(), _logs_to(logf):
        if live is not None:
            live.log = logf
        try:
            pm.execute_notebook(
                str(src), str(target), parameters=parameters, kernel_name=kernel,
                cwd=str(paths.root()), execution_timeout=cell_timeout or None,
                progress_bar=False, engine_name=_engine_name(), stdout_file=logf,
                stderr_file=logf, guard=guard,
                kernel_kwargs={"env": env, "stdout": logf, "stderr": logf})
        except (NotebookInterrupted, NotebookTimeout, pm.PapermillExecutionError, CellTimeoutError,
                DeadKernelError) as err:
            fail(*_classify(err))
        finally:
            if live is not None:
                live.log = None
    return target


def _classify(err: BaseException) -> tuple[type[NotebookError], str, BaseException | None]:
    """``(kind, why, signal error)`` of an execution error: ours as they are, papermill's
    cell error (a signal if the kernel saw one first), nbclient's IOPub timeout, a dead
    kernel."""
    from nbclient.exceptions import CellTimeoutError, DeadKernelError
    from papermill import PapermillExecutionError

    if isinstance(err, NotebookInterrupted):
        return NotebookInterrupted, str(err), err
    if isinstance(err, NotebookTimeout):
        return NotebookTimeout, str(err), None
    if isinstance(err, PapermillExecutionError):
        signum = stop_signal()
        if signum is not None:  # the kernel saw the signal first
            return (NotebookInterrupted, f"stopped by {signal.Signals(signum).name}",
                    NotebookInterrupted("", signum))
        evalue = (str(err.evalue).splitlines() or [""])[0]
        return NotebookError, f"failed: {err.ename}: {evalue}", None
    if isinstance(err, CellTimeoutError):  # nbclient's own (IOPub) timeouts
        return NotebookTimeout, str(err).splitlines()[0], None
    if isinstance(err, DeadKernelError):
        return NotebookError, f"the kernel died ({err})", None
    return NotebookError, str(err), None


def _failure_line(name: str, cell: tuple[int, int, str], kind: type[NotebookError], why: str,
                  files: str) -> str:
    """The one line that says where and why notebook ``name`` stopped (``cell``: number,
    count, first source line; 0 before the first cell)."""
    k, n, first = cell
    if kind is NotebookError and why.startswith("failed"):  # "failed in cell 3: ValueError"
        return f"notebook {name} failed in cell {k}{why[6:]} (cell {k} of {n}: {first}; {files})"
    if k:
        return f"notebook {name} stopped in cell {k} of {n} ({first}): {why} ({files})"
    return f"notebook {name} stopped before its first cell: {why} ({files})"


# --- the series -------------------------------------------------------------------------------

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


def _check_stop(where: str) -> None:
    signum = stop_signal()
    if signum is not None:
        raise NotebookInterrupted(f"stopped by {signal.Signals(signum).name} {where}", signum)


def run_series(*, smoke: bool = False, only: list[str] | None = None,
               out_dir: str | os.PathLike | None = None, force: bool = False,
               stall_timeout: float | None = STALL_TIMEOUT_S,
               cell_timeout: float | None = CELL_TIMEOUT_S,
               notebook_timeout: float | None = NOTEBOOK_TIMEOUT_S,
               report: bool = True, estimate: bool = True,
               echo: Callable[[str], None] | None = None) -> list[Path]:
    """Run the series in order (or only the named notebooks, e.g. ``["03"]``) with live
    progress lines (``echo``, default: print); skip notebooks finished with the same
    parameters and source unless ``force``; print an estimate of the whole run first
    (``estimate``: reference timings scaled by :func:`calibrate`); write ``results/REPORT.md``
    and the site ``results/site/`` at the end (``report``). A failure or stop raises
    :class:`NotebookError` (one line); notebooks before it keep their results. Limits as in
    :func:`run_notebook`."""
    say = echo if echo is not None else (lambda line: print(line, flush=True))
    out = Path(out_dir) if out_dir is not None else paths.results_dir() / "notebooks"
    names = [n for n in series() if not only or any(n.startswith(o) for o in only)]
    if only and not names:
        raise ValueError(f"no notebook matches {only}; the series is {series()}")
    params = {"smoke": smoke, "interactive": False}
    written = []
    with stop_on_signals():
        todo = [n for n in names if force or finished_notebook(out, n, params) is None]
        expected = {n: 0.0 for n in names}
        if estimate and todo:
            expected.update(_say_estimate(todo, smoke, say))
        for n, name in enumerate(names, start=1):
            _check_stop(f"before notebook {name}")
            tag = f"[{n}/{len(names)} {name}]"
            done = None if force else finished_notebook(out, name, params)
            if done is not None:
                say(f"{tag} finished earlier in {done['seconds']:.0f} s; skipped "
                    "(--force reruns it)")
                written.append(out / f"{name}.ipynb")
                continue
            _done_path(out, name).unlink(missing_ok=True)
            guess = f", about {clock(expected[name])} expected" if expected[name] else ""
            say(f"{tag} running (smoke={smoke}{guess}) ...")
            t0 = time.perf_counter()
            target = run_notebook(name, out, params, stall_timeout=stall_timeout,
                                  cell_timeout=cell_timeout, notebook_timeout=notebook_timeout,
                                  live=LiveProgress(tag, say))
            seconds = time.perf_counter() - t0
            _write_done(out, name, params, seconds)
            say(f"{tag} done in {seconds:.0f} s -> {target}")
            written.append(target)
        _check_stop("after the last notebook")
        if report:
            from .site import write_site

            index = write_site(smoke=smoke, notebooks_dir=out)  # writes REPORT.md first
            say(f"report: {paths.results_dir() / 'REPORT.md'}; site: {index}")
    return written


def _say_estimate(todo: list[str], smoke: bool, say: Callable[[str], None]) -> dict[str, float]:
    """Calibrate this machine, say the run's estimate in one line and return the expected
    seconds per notebook."""
    cal = calibrate()
    expected = estimate_seconds(todo, smoke, cal.speed)
    guessed = sorted(n[:2] for n in todo if n[:2] in projected(smoke))
    say(f"estimate: about {clock(sum(expected.values()))} for {len(todo)} notebook(s) "
        f"on this machine ({cal.describe()}"
        + (f"; {', '.join(guessed)} projected, not yet measured" if guessed else "")
        + f"); logs in {log_path('x').parent}")
    return expected


def _write_done(out: Path, name: str, params: dict[str, Any], seconds: float) -> None:
    """The record that notebook ``name`` finished (parameters, time, source, provenance)."""
    from .images import atomic_write_text, sha256_file
    from .provenance import run_record

    atomic_write_text(_done_path(out, name), json.dumps(
        {"notebook": name, "parameters": params, "seconds": round(seconds, 1),
         "source_sha256": sha256_file(notebook_path(name)), "provenance": run_record()},
        indent=1))


if __name__ == "__main__":  # pragma: no cover - `python -m patchforensics.notebooks`
    print(f"calibration: {calibrate().describe()}", file=sys.stderr)

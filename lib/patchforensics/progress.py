"""Progress of long loops: a tqdm bar when a person watches, a heartbeat when the runner does.

Interactively (JupyterLab, a terminal) :func:`bar` is ``tqdm.auto.tqdm``. The headless runner
(:mod:`patchforensics.notebooks`, ``make reproduce``) sets ``PATCHFORENSICS_HEARTBEAT=<N>`` for its
kernels; then :func:`bar` prints no bar but, to stdout, one machine-readable line

    @@progress {"desc": "dcgan", "step": 1600, "total": 2400, "elapsed": 812.3, "eta": 406.1,
    "info": ""}

(one line; wrapped here)

when the loop starts, at most every ``N`` seconds while it runs (default 20) and when it ends.
The runner reads these lines to show live progress on the terminal and to tell a slow cell
(heartbeats keep coming) from a stuck one (silence), and removes them from the executed copy.

A heartbeat is sent from the loop's own steps, never from a timer thread: a loop stuck inside
one step stays silent, which is exactly what the runner's no-progress limit must see. A loop
whose single step can take longer than ``N`` s should call :func:`beat` inside the step.

``elapsed`` and ``eta`` are seconds (``eta`` is null until a step has finished, and when the
total is unknown); ``step`` counts finished steps including ``initial`` (a resumed loop starts
there); ``info`` is the last ``set_postfix`` text ("" if none).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

ENV = "PATCHFORENSICS_HEARTBEAT"
PREFIX = "@@progress "
DEFAULT_INTERVAL_S = 20.0


def heartbeat_interval() -> float | None:
    """Seconds between heartbeat lines from ``$PATCHFORENSICS_HEARTBEAT``; None when unset
    (or empty: interactive use). A value that is not a positive number means the default."""
    value = os.environ.get(ENV, "").strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return DEFAULT_INTERVAL_S
    return seconds if seconds > 0 else DEFAULT_INTERVAL_S


def heartbeat_line(desc: str, step: int, total: int | None, elapsed: float,
                   eta: float | None, info: str = "") -> str:
    """The one line a heartbeat prints (see the module docstring), without newline."""
    record = {"desc": desc, "step": int(step), "total": None if total is None else int(total),
              "elapsed": round(float(elapsed), 1),
              "eta": None if eta is None else round(float(eta), 1), "info": info}
    return PREFIX + json.dumps(record)


def parse_heartbeat(line: str) -> dict[str, Any] | None:
    """The record of a heartbeat line (text before the prefix is ignored), else None."""
    at = line.find(PREFIX)
    if at < 0:
        return None
    try:
        record = json.loads(line[at + len(PREFIX):])
    except ValueError:
        return None
    return record if isinstance(record, dict) and "desc" in record else None


def _postfix_text(ordered_dict: Mapping[str, Any] | None, kwargs: Mapping[str, Any]) -> str:
    items = {**(ordered_dict or {}), **kwargs}
    return ", ".join(f"{k}={v}" for k, v in items.items())


class HeartbeatBar:
    """The part of ``tqdm``'s interface the library uses (iteration, ``update``,
    ``set_postfix``, ``close``, ``n``), printing heartbeat lines instead of drawing a bar."""

    def __init__(self, iterable: Iterable[Any] | None = None, *, desc: str | None = None,
                 total: int | None = None, initial: int = 0, interval: float = DEFAULT_INTERVAL_S,
                 disable: bool = False) -> None:
        if total is None and iterable is not None:
            try:
                total = initial + len(iterable)  # type: ignore[arg-type]
            except TypeError:
                total = None
        self.iterable = iterable
        self.desc = desc or ""
        self.total = total
        self.initial = self.n = int(initial)
        self.interval = float(interval)
        self.disable = disable
        self.info = ""
        self.closed = False
        self.start = time.monotonic()
        self.last, self.last_step = -float("inf"), None
        self._emit()  # the loop started: the runner learns its total at once

    def _emit(self) -> None:
        if self.disable:
            return
        now = time.monotonic()
        elapsed = now - self.start
        done = self.n - self.initial
        eta = None
        if self.total is not None and done > 0:
            eta = elapsed / done * max(self.total - self.n, 0)
        print(heartbeat_line(self.desc, self.n, self.total, elapsed, eta, self.info),
              file=sys.stdout, flush=True)
        self.last, self.last_step = now, self.n

    def update(self, n: int = 1) -> None:
        self.n += n
        if time.monotonic() - self.last >= self.interval:
            self._emit()

    def set_postfix(self, ordered_dict: Mapping[str, Any] | None = None, refresh: bool = True,
                    **kwargs: Any) -> None:
        self.info = _postfix_text(ordered_dict, kwargs)

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        self.desc = desc or ""

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.n != self.last_step or self.n == self.initial:
                self._emit()

    def __iter__(self) -> Iterator[Any]:
        if self.iterable is None:
            raise TypeError("HeartbeatBar without an iterable cannot be iterated")
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __enter__(self) -> HeartbeatBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def bar(iterable: Iterable[Any] | None = None, *, desc: str | None = None,
        total: int | None = None, initial: int = 0, disable: bool = False,
        **tqdm_kwargs: Any) -> Any:
    """A progress bar over ``iterable`` (or a manual one with ``total``): ``tqdm.auto.tqdm``
    with these arguments, or a :class:`HeartbeatBar` when ``$PATCHFORENSICS_HEARTBEAT`` is set.
    ``disable`` silences both. Other keywords (``unit``, ``leave``...) go to tqdm only."""
    interval = heartbeat_interval()
    if interval is None:
        from tqdm.auto import tqdm

        return tqdm(iterable, desc=desc, total=total, initial=initial, disable=disable,
                    **tqdm_kwargs)
    return HeartbeatBar(iterable, desc=desc, total=total, initial=initial, interval=interval,
                        disable=disable)


_beats: dict[str, tuple[float, int, float]] = {}  # desc -> (first beat, its step, last line)


def beat(desc: str, step: int | None = None, total: int | None = None, info: str = "") -> None:
    """Tell the runner that the loop ``desc`` is alive (for loops that are not iterables, or
    single steps longer than the heartbeat interval). Prints a heartbeat line at most every
    interval per ``desc`` when ``$PATCHFORENSICS_HEARTBEAT`` is set, else does nothing.
    ``elapsed`` and the rate behind ``eta`` count from the first beat of ``desc`` in this
    process (so a resumed loop's estimate uses only its own steps)."""
    interval = heartbeat_interval()
    if interval is None:
        return
    now = time.monotonic()
    first, first_step, last = _beats.get(desc, (now, step or 0, -float("inf")))
    if now - last < interval:
        return
    _beats[desc] = (first, first_step, now)
    eta = None
    if step is not None and total is not None and step > first_step:
        eta = (now - first) / (step - first_step) * max(total - step, 0)
    print(heartbeat_line(desc, step or 0, total, now - first, eta, info), file=sys.stdout,
          flush=True)

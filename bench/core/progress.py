"""Progress that reads well in a terminal and in a log file alike (the one progress API of the project).

tqdm alone writes carriage-return frames: redirected to a file or a CI log they become thousands of
characters of half-drawn bars, and nested bars (seeds around finetune steps) interleave. So:

- **terminal** (the stream is a TTY): one bar at a time. The outermost open stage draws a tqdm bar;
  a stage opened inside it (finetune steps inside the seeds loop) shows as that bar's postfix
  (``finetune 120/300``) instead of a second bar.
- **log** (not a TTY): plain lines, never ``\\r``. A stage prints a line when it has advanced another
  :data:`LINE_STEP` of its total and :data:`MIN_GAP_S` have passed, or when :data:`MAX_GAP_S` have
  passed whatever its progress, and one closing line with its count and time. A stage that ends
  within :data:`QUIET_S` prints nothing at all: a fast step is not news, and the command's own
  summary says what was done. A stage inside another (feature batches inside the seeds loop)
  speaks only when it runs past :data:`MAX_GAP_S`: the outer stage's lines already say where the
  command is.
- **off**: ``enabled=False`` (a command's ``--no-progress``) or :func:`set_enabled` (``python -m bench
  --no-progress``) shows nothing.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import IO, Any, Generic, TypeVar

T = TypeVar("T")

#: Log mode: a progress line per this fraction of the total at most ...
LINE_STEP = 0.25
#: ... and no more often than this ...
MIN_GAP_S = 30.0
#: ... but at least this often while a stage runs, so a slow stage still shows that it is alive.
MAX_GAP_S = 60.0
#: Log mode: a stage that ends sooner than this leaves no line.
QUIET_S = 2.0
#: Terminal mode: how often an inner stage refreshes the outer bar's postfix.
POSTFIX_REFRESH_S = 0.5

_enabled = True
_open: list[Progress[Any]] = []


def set_enabled(enabled: bool) -> None:
    """Switch all progress output on or off for this process (``python -m bench --no-progress``)."""
    global _enabled
    _enabled = enabled


def _format_seconds(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes} min {secs:02d} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


class Progress(Generic[T]):
    """One stage's progress; iterate over it (wrapping an iterable) or call :meth:`update`."""

    def __init__(
        self,
        iterable: Iterable[T] | None,
        *,
        desc: str,
        total: int | None,
        unit: str,
        enabled: bool,
        stream: IO[str] | None,
    ) -> None:
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.iterable = iterable
        self.desc = desc
        self.total = total
        self.unit = unit
        self.count = 0
        self.notes = ""
        self.stream = stream if stream is not None else sys.stderr
        self.mode = "off" if not (enabled and _enabled) else "bar" if _isatty(self.stream) else "log"
        self.start = self.last_line = self.last_refresh = time.monotonic()
        self.last_line_count = 0
        self.first_update: float | None = None  # end of the first item: the rate is measured from here
        self.bar: Any = None
        self.closed = False
        if self.mode == "off":
            return
        self.outer = _open[0] if _open else None
        _open.append(self)
        if self.mode == "bar" and self.outer is None:
            from tqdm import tqdm

            self.bar = tqdm(
                total=total, desc=desc, unit=unit, file=self.stream, leave=False, dynamic_ncols=True
            )

    def __iter__(self) -> Iterator[T]:
        if self.iterable is None:
            raise TypeError(f"progress {self.desc!r} wraps no iterable; call update() instead")
        try:
            for item in self.iterable:
                yield item
                self.update()
        finally:
            self.close()

    def __enter__(self) -> Progress[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        """``n`` more items done."""
        self.count += n
        if self.mode == "off":
            return
        now = time.monotonic()
        if self.first_update is None:
            self.first_update = now
        if self.bar is not None:
            self.bar.update(n)
        elif self.mode == "bar":
            if now - self.last_refresh >= POSTFIX_REFRESH_S:
                self.last_refresh = now
                self._show_in_outer_bar()
        elif self._line_due(now):
            self._line(now)

    def note(self, text: str) -> None:
        """A short status beside the count (the unit being worked on, the current loss)."""
        self.notes = text
        if self.bar is not None:
            self.bar.set_postfix_str(text, refresh=False)

    def close(self) -> None:
        """End the stage: the closing line (log mode, if it took a while) or clear the bar."""
        if self.closed:
            return
        self.closed = True
        if self.mode == "off":
            return
        if self in _open:
            _open.remove(self)
        if self.bar is not None:
            self.bar.close()
        elif self.mode == "bar" and self.outer is not None and self.outer.bar is not None:
            self.outer.bar.set_postfix_str(self.outer.notes, refresh=True)
        elif self.mode == "log":
            elapsed = time.monotonic() - self.start
            if self.last_line_count or (elapsed >= QUIET_S and self.outer is None):
                done = f"{self.count}/{self.total}" if self.total is not None else str(self.count)
                self._write(f"{self.desc}: {done} {self.unit} in {_format_seconds(elapsed)}")

    def _line_due(self, now: float) -> bool:
        if self.total and self.count >= self.total:
            return False  # the closing line says it
        since = now - self.last_line
        if since >= MAX_GAP_S:
            return True
        if not self.total or since < MIN_GAP_S or self.outer is not None:
            return False
        return (self.count - self.last_line_count) / self.total >= LINE_STEP

    def _line(self, now: float) -> None:
        elapsed = now - self.start
        text = f"{self.desc}: {self.count}"
        if self.total:
            left = self._seconds_per_item(now) * (self.total - self.count)
            text += (
                f"/{self.total} {self.unit} ({100 * self.count / self.total:.0f}%), "
                f"{_format_seconds(elapsed)}, about {_format_seconds(left)} left"
            )
        else:
            text += f" {self.unit}, {_format_seconds(elapsed)}"
        self._write(text + (f" [{self.notes}]" if self.notes else ""))
        self.last_line, self.last_line_count = now, max(self.count, 1)

    def _seconds_per_item(self, now: float) -> float:
        """From the second item on, the rate since the first one ended: a stage opened long before its
        items start (the seeds loop around pretraining) does not count the wait as work."""
        if self.first_update is not None and self.count > 1:
            return (now - self.first_update) / (self.count - 1)
        return (now - self.start) / max(self.count, 1)

    def _show_in_outer_bar(self) -> None:
        outer = self.outer
        if outer is None or outer.bar is None:
            return
        done = f"{self.count}/{self.total}" if self.total else str(self.count)
        inner = f"{self.desc} {done}" + (f" {self.notes}" if self.notes else "")
        outer.bar.set_postfix_str(f"{outer.notes} | {inner}" if outer.notes else inner, refresh=True)

    def _write(self, text: str) -> None:
        print(text, file=self.stream, flush=True)


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or exotic stream: treat as a log
        return False


def progress_of(
    iterable: Iterable[T] | None = None,
    *,
    desc: str,
    total: int | None = None,
    unit: str = "it",
    enabled: bool = True,
    stream: IO[str] | None = None,
) -> Progress[T]:
    """Progress of one stage, shown as the stream allows (see the module doc); ``stream``: stderr."""
    return Progress(iterable, desc=desc, total=total, unit=unit, enabled=enabled, stream=stream)

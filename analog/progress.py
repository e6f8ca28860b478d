"""Progress of a long loop: a bar on a terminal, a few plain lines anywhere else.

A tqdm bar redraws itself up to ten times a second. On a terminal that is one line that
moves; written to a file or a pipe every redraw stays, and a long job's log fills with
thousands of frames. `progress()` therefore gives a tqdm bar only when its stream is a
terminal, and otherwise a `LineProgress`: one line each time another `every` fraction of
the total is done (10 % by default; None: no intermediate lines, for a loop whose caller
prints its own line per epoch) and one line at the end (unless `final=False`).

Both have the part of tqdm's interface the project uses: `update`, `set_postfix`,
`set_postfix_str`, `write`, `close`, and use as a context manager.
"""
from __future__ import annotations

import sys
import time

__all__ = ["progress", "on_terminal", "LineProgress"]


def on_terminal(stream=None) -> bool:
    """Whether `stream` (default: standard error, where the bars go) is a terminal."""
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):     # no isatty, or a closed stream
        return False


class LineProgress:
    """tqdm's interface, printing a plain line per `every` fraction of `total` and one at the end."""

    def __init__(self, total: int, desc: str = "", unit: str = "it", every: float | None = 0.1,
                 final: bool = True, enabled: bool = True, stream=None):
        if every is not None and not 0 < every <= 1:
            raise ValueError(f"every={every!r}: a fraction of the total in (0, 1], or None")
        self.total, self.desc, self.unit = int(total or 0), desc, unit
        self.every, self.final, self.enabled = every, final, enabled
        self.stream = stream
        self.n, self.postfix, self.closed = 0, "", False
        self._marks = 1 if every else None      # the next line is due at _marks * every of the total
        self._t0 = time.perf_counter()

    def _say(self, text: str) -> None:
        if not self.enabled:
            return
        stream = sys.stderr if self.stream is None else self.stream
        if stream is sys.stderr:
            sys.stdout.flush()               # our lines stay in order with what was printed before
        print(text, file=stream, flush=True)

    def _status(self) -> str:
        seconds = time.perf_counter() - self._t0
        rate = self.n / seconds if seconds > 0 else 0.0
        share = f" ({100 * self.n / self.total:.0f} %)" if self.total else ""
        text = f"{self.desc}: {self.n}/{self.total or '?'} {self.unit}{share}, {seconds:.1f} s, {rate:.4g} {self.unit}/s"
        return text + (f", {self.postfix}" if self.postfix else "")

    def update(self, n: int = 1) -> None:
        self.n += int(n)
        if self._marks is None or not self.total or self.n >= self.total:
            return
        if self.n >= self._due():
            self._say(self._status())
            while self._due() <= self.n:
                self._marks += 1

    def _due(self) -> float:
        return self._marks * self.every * self.total - 1e-9     # 3 * 0.1 is a hair above 0.3

    def set_postfix(self, ordered_dict=None, refresh: bool = True, **values) -> None:
        items = {**(ordered_dict or {}), **values}
        self.postfix = ", ".join(f"{k}={v}" for k, v in items.items())

    def set_postfix_str(self, text: str = "", refresh: bool = True) -> None:
        self.postfix = str(text)

    def write(self, text: str) -> None:
        self._say(text)

    def close(self) -> None:
        if not self.closed and self.final:
            self._say(self._status())
        self.closed = True

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            self.closed = True             # no closing line for a loop that did not finish
        self.close()
        return False


def progress(total: int, desc: str = "", unit: str = "it", *, enabled: bool = True, every: float | None = 0.1,
             final: bool = True, stream=None, **bar_options):
    """A tqdm bar on a terminal, else a LineProgress (see the module docstring).

    enabled=False: nothing is shown. bar_options go to tqdm only (leave, mininterval, ...)."""
    if enabled and on_terminal(stream):
        from tqdm.auto import tqdm
        return tqdm(total=total, desc=desc, unit=unit, file=stream, dynamic_ncols=True, **bar_options)
    return LineProgress(total, desc, unit, every=every, final=final, enabled=enabled, stream=stream)

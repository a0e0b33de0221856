"""Progress bars on stderr: redrawn on a terminal or in a notebook, a line a minute into a
file, so a batch job's log shows its progress without a redraw per step."""

from __future__ import annotations

import sys
import weakref

_OPEN: weakref.WeakSet = weakref.WeakSet()  # bars not yet closed, for close_all

LOG_INTERVAL = 60.0
"""Seconds between a bar's lines when stderr is a file (a batch job's log)."""


def progress_bar(total: int, done: int, description: str, unit: str, enabled: bool = True, leave: bool = True):
    """A tqdm bar of ``total`` ``unit``s, ``done`` of them already done; ``enabled`` False hides it."""
    from tqdm.auto import tqdm

    live = sys.stderr.isatty() or tqdm.__module__.startswith("tqdm.notebook")
    bar = tqdm(
        total=total,
        initial=done,
        desc=description,
        unit=unit,
        disable=not enabled,
        leave=leave,
        smoothing=0.1,
        mininterval=0.1 if live else LOG_INTERVAL,
        **({} if live else {"file": _Lines(sys.stderr), "ascii": True}),
    )
    _OPEN.add(bar)
    return bar


def close_all() -> None:
    """Close every bar still open (a command stopped midway), so what is said next starts on a
    line of its own."""
    for bar in list(_OPEN):
        bar.close()


class _Lines:
    """A log file as a bar's stream: each update on a line of its own (a terminal's bar redraws
    one line with carriage returns, which a log would keep as one endless line)."""

    def __init__(self, stream) -> None:
        self.stream = stream

    def write(self, text: str) -> None:
        line = text.replace("\r", "").rstrip()
        if line:  # not the blanks that clear a closed bar's line
            self.stream.write(line + "\n")

    def flush(self) -> None:
        self.stream.flush()

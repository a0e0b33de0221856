"""The ``climgen`` command line: demo, synthesize, run, fetch, coarsen, evaluate, benchmark, train, check.

One module per group of commands (:mod:`climgen.cli.refine`, :mod:`climgen.cli.data`,
:mod:`climgen.cli.quality`), all registered on :data:`climgen.cli.app.app`. User errors
(:class:`climgen.errors.ClimgenError`) print one line on stderr and exit with 2; ``--debug``
shows the traceback instead.
"""

from __future__ import annotations

import importlib
import signal
import sys
import threading
import warnings

import typer

from climgen.cli.app import INTERRUPTED, app, state
from climgen.errors import ClimgenError

for _group in ("refine", "data", "quality"):  # each registers its commands; --help lists them in this order
    importlib.import_module(f"climgen.cli.{_group}")

__all__ = ["app", "main"]


def _show_warning(message, category, filename, lineno, file=None, line=None, _default=warnings.showwarning) -> None:
    """climgen's own warnings as one line each; other libraries' as usual."""
    from climgen.errors import ClimgenWarning

    if issubclass(category, ClimgenWarning):
        typer.echo(f"climgen: warning: {message}", err=True)
    else:
        _default(message, category, filename, lineno, file, line)


def _terminate(signum, frame) -> None:
    """SIGTERM (a batch system's time limit, ``scancel``, ``kill``) stops a command as Ctrl-C
    does: locks released, temporary files removed, and what was kept said."""
    state["signal"] = signum
    raise KeyboardInterrupt


def main() -> None:
    """Entry point: run the app, turning user errors into one line on stderr."""
    warnings.showwarning = _show_warning
    state.update(signal=signal.SIGINT, interrupt_said=False)
    in_main_thread = threading.current_thread() is threading.main_thread()  # where Python lets signals be caught
    previous = signal.signal(signal.SIGTERM, _terminate) if in_main_thread else None
    try:
        code = app(standalone_mode=False)  # returns the code of typer.Exit instead of raising
    except ClimgenError as err:
        if state["debug"]:
            raise
        typer.echo(f"climgen: error: {err}", err=True)
        sys.exit(2)
    except (typer.Exit, SystemExit) as stop:
        code = getattr(stop, "exit_code", getattr(stop, "code", 0))
    except Exception as err:
        # usage errors from the (vendored) click parser: one line too
        if hasattr(err, "format_message") and hasattr(err, "exit_code"):
            message = err.format_message().strip()
            if message:  # none when the help was shown instead (a bare `climgen`)
                names, context = [], getattr(err, "ctx", None)
                while context is not None and context.parent is not None:  # the subcommands, not the program
                    names.insert(0, context.info_name)
                    context = context.parent
                typer.echo(f"climgen: error: {message} (see {' '.join(['climgen', *names])} --help)", err=True)
            sys.exit(err.exit_code)
        raise
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)
    if code == INTERRUPTED:  # typer's status for a KeyboardInterrupt (Ctrl-C, or SIGTERM above)
        if not state["interrupt_said"]:
            typer.echo("climgen: interrupted", err=True)
        sys.exit(128 + int(state["signal"]))
    sys.exit(code if isinstance(code, (int, str)) else 0)  # a text (sys.exit("...")): said on stderr, status 1

"""The ``climgen`` command line: demo, synthesize, run, fetch, coarsen, evaluate, benchmark, train, check.

One module per group of commands (:mod:`climgen.cli.refine`, :mod:`climgen.cli.data`,
:mod:`climgen.cli.quality`), all registered on :data:`climgen.cli.app.app`. User errors
(:class:`climgen.errors.ClimgenError`) print one line on stderr and exit with 2; ``--debug``
shows the traceback instead.
"""

from __future__ import annotations

import importlib
import sys
import warnings

import typer

from climgen.cli.app import app, state
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


def main() -> None:
    """Entry point: run the app, turning user errors into one line on stderr."""
    warnings.showwarning = _show_warning
    try:
        code = app(standalone_mode=False)  # returns the code of typer.Exit instead of raising
    except ClimgenError as err:
        if state["debug"]:
            raise
        typer.echo(f"climgen: error: {err}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("climgen: interrupted", err=True)
        sys.exit(130)
    except (typer.Exit, SystemExit) as stop:
        sys.exit(getattr(stop, "exit_code", getattr(stop, "code", 0)))
    except Exception as err:
        # usage errors from the (vendored) click parser: one line too
        if hasattr(err, "format_message") and hasattr(err, "exit_code"):
            typer.echo(f"climgen: error: {err.format_message()} (see climgen --help)", err=True)
            sys.exit(err.exit_code)
        raise
    sys.exit(code if isinstance(code, int) else 0)

"""The typer application every ``climgen`` command registers on, and the debug switch."""

from __future__ import annotations

from typing import Annotated

import typer

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    help="Refine coarse climate fields with an adaptive multi-scale generator.",
)
state = {"debug": False, "signal": 2, "interrupt_said": False}

INTERRUPTED = 130
"""The exit status typer gives a command stopped by Ctrl-C; climgen exits with 128 plus the
number of the signal that stopped it (130 for SIGINT, 143 for SIGTERM)."""


def interrupted(note: str) -> typer.Exit:
    """Say what an interrupted command kept (``note`` starts with "interrupted"); the exit to raise."""
    from climgen.progress import close_all

    close_all()
    typer.echo(f"climgen: {note}", err=True)
    state["interrupt_said"] = True
    return typer.Exit(INTERRUPTED)


def _print_version(asked: bool) -> None:
    if asked:
        from climgen import __version__

        typer.echo(f"climgen {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print climgen's version and stop.")
    ] = False,
) -> None:
    state["debug"] = debug

"""What an unfinished streamed job leaves beside its output (a partial store and its
manifest of finished tasks, :mod:`climgen.streaming`), read for the user: other jobs' leftovers,
the command that started one, and what an interrupted run kept."""

from __future__ import annotations

import json
import os
from pathlib import Path


def other_partials(output: Path, store: Path) -> list[Path]:
    """The leftovers (stores, manifests, half-converted files) of other jobs on ``output`` than
    the one whose partial store is ``store``."""
    pattern = f".{output.name}.partial-job-*"
    return [path for path in output.parent.glob(pattern) if not path.name.startswith(store.name.rsplit(".", 1)[0])]


def started_by(store: Path) -> str | None:
    """The command or call that began a partial store (its ``history``'s newest entry)."""
    try:
        history = json.loads((store / ".zattrs").read_text()).get("history", "")
    except (OSError, ValueError):
        return None
    first = str(history).splitlines()[0] if history else ""
    return first.split(": ", 1)[1] if ": " in first else None


def interruption_note(output: Path) -> str:
    """What an interrupted job on ``output`` left to resume, said to the user."""
    manifests = sorted(Path(output).parent.glob(f".{Path(output).name}.partial-job-*.manifest"), key=os.path.getmtime)
    done = sum(1 for entry in manifests[-1].iterdir() if not entry.name.startswith(".")) if manifests else 0
    complete = [store for store in Path(output).parent.glob(f".{Path(output).name}.partial-job-*.zarr") if _complete(store)]
    if not manifests and complete:  # every task done, interrupted while the output was written from the store
        return (
            f"interrupted while writing {Path(output).name}: every task finished and is kept in {complete[0].name}; "
            "rerun the same command to write it (no task is redone)"
        )
    if not done:
        if manifests:  # the job's store was begun: it names the job, so another one is refused beside it
            return (
                f"interrupted before any task finished: the job's empty store {manifests[-1].with_suffix('.zarr').name} "
                "is kept; the same command starts it again, another job needs --overwrite"
            )
        return "interrupted before any task finished: nothing to resume, a rerun starts from the beginning"
    kept = manifests[-1].with_suffix(".zarr").name
    return f"interrupted: {done} finished task{'s' if done != 1 else ''} kept in {kept}; rerun the same command to resume"


def _complete(store: Path) -> bool:
    """Whether a job's partial store holds every task (marked so before the output is written)."""
    try:
        return json.loads((store / ".zattrs").read_text()).get("climgen_complete") == "yes"
    except (OSError, ValueError):
        return False

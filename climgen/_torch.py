"""Import torch where it is needed, with a clear error when it is missing."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

from climgen.errors import MissingDependencyError


def import_torch() -> ModuleType:
    """Return the ``torch`` module or raise :class:`MissingDependencyError`."""
    try:
        import torch
    except ImportError as err:  # pragma: no cover - exercised only without torch
        raise MissingDependencyError("climgen needs PyTorch for refinement: pip install 'torch>=2.13'") from err
    return torch


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run torch on ``count`` intra-op threads inside the block, then restore the setting.

    Convolutions can round differently with different thread counts, so the streaming path
    runs every task on one thread (parallel across tasks instead): then results are the same
    bits whatever the number of workers.
    """
    torch = import_torch()
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)

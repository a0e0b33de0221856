"""Import torch where it is needed, with a clear error when it is missing."""

from __future__ import annotations

from types import ModuleType

from climgen.errors import MissingDependencyError


def import_torch() -> ModuleType:
    """Return the ``torch`` module or raise :class:`MissingDependencyError`."""
    try:
        import torch
    except ImportError as err:  # pragma: no cover - exercised only without torch
        raise MissingDependencyError("climgen needs PyTorch for refinement: pip install 'torch>=2.13'") from err
    return torch

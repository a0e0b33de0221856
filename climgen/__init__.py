"""climgen: adaptive multi-scale refinement of coarse climate fields.

Importing climgen registers the ``.climgen`` accessor on xarray objects. Torch and the models
are imported only when a refinement runs.
"""

from __future__ import annotations

__version__ = "0.2.0.dev0"

from climgen import accessor as _accessor  # noqa: E402,F401  (registers ds.climgen)
from climgen.errors import ClimgenError  # noqa: E402
from climgen.pipeline import complexity, synthesize  # noqa: E402

__all__ = ["ClimgenError", "__version__", "complexity", "synthesize"]

_SUBMODULES = frozenset({"evaluation", "grid", "metrics", "plotting", "testing"})
"""Modules reachable as ``climgen.NAME`` after ``import climgen`` alone, imported on first use."""


def __getattr__(name: str):
    if name in _SUBMODULES:
        import importlib

        return importlib.import_module(f"climgen.{name}")
    raise AttributeError(f"module 'climgen' has no attribute {name!r}")

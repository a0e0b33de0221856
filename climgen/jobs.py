"""Batch refinement recipes: ``climgen run RECIPE.yaml`` (typed, validated, resumable).

A recipe names the input (a file, a zarr store, or several files / a glob combined by
coordinates), the output, the refinement options, the chunking and where to run. Paths are
relative to the recipe's folder. ``--dry-run`` prints the plan without refining anything.
"""

from __future__ import annotations

import glob
from pathlib import Path

from pydantic import Field, field_validator

from climgen.errors import InputError
from climgen.yamlconfig import Strict, load_yaml_model


class Chunking(Strict):
    """How the job is cut into dask tasks (does not change the numbers)."""

    region_tiles: int = Field(4, ge=1, description="tiles per task side")
    time_chunk: int = Field(8, ge=1, description="time steps per task")


class Cluster(Strict):
    """Where tasks run: local threads (default), a local cluster of N workers, or a scheduler."""

    workers: int | None = Field(None, ge=1)
    scheduler: str | None = None


class RunRecipe(Strict):
    """One refinement job."""

    input: str | list[str]
    output: str
    factor: int = 4
    variables: list[str] | None = None
    covariates: dict[str, str] = {}  # name -> FILE[:VAR]
    model: str = "default"
    seed: int = Field(0, ge=0)
    members: int = Field(1, ge=1, le=1000)
    adaptive: bool = True
    budget: float | None = Field(None, gt=0, le=1)
    quality: float | None = Field(None, gt=0, lt=1)
    tile_size: int | None = Field(None, ge=4)
    halo: int | None = Field(None, ge=0)
    chunks: Chunking = Chunking()
    cluster: Cluster = Cluster()
    overwrite: bool = False
    base_dir: Path = Path(".")

    @field_validator("factor")
    @classmethod
    def _factor(cls, value: int) -> int:
        if value not in (2, 4, 8, 16):
            raise ValueError(f"factor must be 2, 4, 8 or 16, got {value}")
        return value

    def resolve(self, path: str) -> Path:
        candidate = Path(path).expanduser()
        return candidate if candidate.is_absolute() else (self.base_dir / candidate)

    def input_paths(self) -> list[Path]:
        """The input files, globs expanded, in sorted order."""
        paths: list[Path] = []
        for pattern in [self.input] if isinstance(self.input, str) else self.input:
            resolved = str(self.resolve(pattern))
            matches = sorted(glob.glob(resolved)) if glob.has_magic(resolved) else [resolved]
            if not matches:
                raise InputError(f"no input matches {resolved}")
            paths += [Path(match) for match in matches]
        return paths


def load_run_recipe(path: str | Path) -> RunRecipe:
    """Read and validate a batch recipe."""
    return load_yaml_model(path, RunRecipe, base_dir=Path(path).resolve().parent)

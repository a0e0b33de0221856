"""Batch refinement recipes: ``climgen run RECIPE.yaml`` (typed, validated, resumable).

A recipe names the input (a file, a zarr store, or several files / a glob combined by
coordinates; or a NASA Earthdata collection to fetch first), the output, the refinement options, the chunking and where to run. Paths are
relative to the recipe's folder. ``--dry-run`` prints the plan without refining anything.
"""

from __future__ import annotations

import glob
from datetime import date
from pathlib import Path

from pydantic import ConfigDict, Field, StrictBool, model_validator

from climgen.config import Integer, SynthesisOptions
from climgen.errors import InputError
from climgen.yamlconfig import Strict, load_yaml_model


class Chunking(Strict):
    """How the job is cut into dask tasks (does not change the numbers)."""

    region_tiles: Integer = Field(4, ge=1, description="tiles per task side")
    time_chunk: Integer = Field(8, ge=1, description="time steps per task")


class Cluster(Strict):
    """Where tasks run: local threads (default), a local cluster of N workers, or a scheduler."""

    workers: Integer | None = Field(None, ge=1)
    scheduler: str | None = None


class FetchSection(Strict):
    """Fetch the input from NASA Earthdata first (``climgen fetch``); the cube is the input."""

    collection: str
    variables: list[str]
    bbox: tuple[float, float, float, float]
    start: date  # YYYY-MM-DD, quoted or not (YAML reads an unquoted one as a date)
    end: date | None = None
    cube: str


class RunRecipe(SynthesisOptions):
    """One refinement job: the refinement options of :class:`climgen.config.SynthesisOptions`
    (the same names, ranges and rules as ``synthesize``), plus where the data come from and go."""

    model_config = ConfigDict(extra="forbid")

    fetch: FetchSection | None = None
    input: str | list[str] | None = None
    output: str
    covariates: dict[str, str] = {}  # name -> FILE[:VAR]
    chunks: Chunking = Chunking()
    cluster: Cluster = Cluster()
    overwrite: StrictBool = False
    base_dir: Path = Path(".")

    @model_validator(mode="after")
    def _one_input(self) -> RunRecipe:
        if (self.input is None) == (self.fetch is None):
            raise ValueError("give either input (files) or fetch (from NASA Earthdata), not both or neither")
        if isinstance(self.input, list) and not self.input:
            raise ValueError("input lists no file")
        return self

    def resolve(self, path: str) -> Path:
        """A path from the recipe, relative to the recipe's folder."""
        candidate = Path(path).expanduser()
        return candidate if candidate.is_absolute() else (self.base_dir / candidate).resolve()

    def input_paths(self) -> list[Path]:
        """The input files, globs expanded, in sorted order."""
        if self.fetch is not None:
            return [self.resolve(self.fetch.cube)]
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


def fetch_request(section: FetchSection):
    """The :class:`climgen.io.earthdata.Request` a recipe's fetch section describes."""
    from climgen.io import earthdata

    collection = earthdata.find_collection(section.collection)
    end = section.end or section.start
    return earthdata.Request(collection, tuple(section.variables), tuple(section.bbox), section.start, end).validate()

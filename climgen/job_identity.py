"""The identity of a streamed job (:mod:`climgen.streaming`): what must be the same for a
half-done output to be resumed, down to every file the input was read from."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import xarray as xr

from climgen import __version__
from climgen._torch import software
from climgen.io.write import output_format

if TYPE_CHECKING:
    from climgen.planning import Plan
    from climgen.stream_options import StreamOptions


def input_identity(ds: xr.Dataset, variables: list[str]) -> dict:
    """What makes two inputs the same job: every source file (size, mtime; for a zarr store,
    every file in it, so chunks rewritten in place count), shapes, coordinates."""
    from climgen.io.open import SOURCES

    sources = ds.encoding.get(SOURCES) or [ds.encoding.get("source")]
    identity: dict = {"sizes": dict(ds.sizes), "variables": variables}
    files = [source_state(source) for source in sources if source and os.path.exists(source)]
    if files:
        identity["source"] = files if len(files) > 1 else files[0]
    digest = hashlib.sha256()
    for name in sorted(ds.coords):
        values = ds[name].values
        values = values.astype(str) if values.dtype.kind == "O" else values  # cftime dates: by value, not address
        digest.update(name.encode() + np.ascontiguousarray(values).tobytes())
    identity["coordinates_sha256"] = digest.hexdigest()
    return identity


def input_files(ds: xr.Dataset) -> list[dict]:
    """The files an input was read from, for the provenance: each one's absolute path, size
    in bytes and modification time (UTC); [] for a dataset made in memory."""
    from datetime import datetime, timezone

    from climgen.io.open import SOURCES

    files = []
    for source in ds.encoding.get(SOURCES) or [ds.encoding.get("source")]:
        if source and os.path.exists(source):
            stat = os.stat(source)
            modified = datetime.fromtimestamp(stat.st_mtime, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            entry = {"path": os.path.abspath(source), "modified": modified}
            files.append(entry | ({} if os.path.isdir(source) else {"bytes": stat.st_size}))
    return files


def source_state(source: str) -> list:
    """A file's path, size and modification time; a folder's (a zarr store) path and a digest
    of those of every file in it."""
    path = os.path.abspath(source)
    if not os.path.isdir(path):
        stat = os.stat(path)
        return [path, stat.st_size, stat.st_mtime_ns]
    digest = hashlib.sha256()
    for folder, subfolders, names in os.walk(path):
        subfolders.sort()
        for name in sorted(names):
            stat = os.stat(os.path.join(folder, name))
            digest.update(f"{os.path.relpath(os.path.join(folder, name), path)}:{stat.st_size}:{stat.st_mtime_ns};".encode())
    return [path, digest.hexdigest()]


def job_identity(
    plan_: Plan, options: StreamOptions, ds: xr.Dataset, output: Path, precision: str, device: str | None = None
) -> str:
    """The streamed job's id: a hash of everything that makes its output what it is (the
    climgen version, options, model, input files and coordinates, covariates, chunking, the
    kind of device and the precision the model runs in, depth policy and map), so a half-done
    output is resumed only by the same job. ``device``: the device kind resolved (default: the
    option as given)."""
    covariates = plan_.prepared.covariates
    document = {
        "climgen_version": __version__,
        "config": plan_.config.as_dict(),
        "model_sha256": plan_.checkpoint.sha256,
        "model_config_sha256": plan_.checkpoint.config_sha256,
        "input": input_identity(ds, plan_.prepared.variables),
        "covariates": plan_.prepared.covariate_names,
        "bounds": plan_.prepared.limits,
        "order": plan_.prepared.order,
        "covariates_sha256": None if covariates is None else hashlib.sha256(covariates.tobytes()).hexdigest(),
        "region_tiles": options.region_tiles,
        "time_chunk": options.time_chunk,
        "device": device or options.device,
        "precision_used": precision,
        # the CPU kernels and torch a bf16 run's bits depend on: a resume elsewhere is another job
        "software": {key: value for key, value in software().items() if key in ("torch", "cpu_capability", "onednn_max_cpu_isa")},
        "noise_keys": "field coordinates",  # members are named by their fields' coordinates (not positions)
        "format": output_format(output),
        "longitude_wrap_cells": plan_.wrap_cells,
        # the depth map itself: a climgen whose depth policy changed must not resume another's tiles
        "depth_policy": plan_.depth_policy,
        "depth_sha256": hashlib.sha256(np.ascontiguousarray(plan_.depth, dtype=np.int8).tobytes()).hexdigest(),
    }
    return hashlib.sha256(json.dumps(document, sort_keys=True, default=str).encode()).hexdigest()

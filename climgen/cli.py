"""The ``climgen`` command line: demo, synthesize, run, fetch, coarsen, evaluate, benchmark, train, check.

User errors (:class:`climgen.errors.ClimgenError`) print one line on stderr and exit with 2;
``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
import warnings
from importlib import resources
from pathlib import Path
from typing import Annotated

import typer

from climgen.errors import ClimgenError, ConfigError, InputError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Refine coarse climate fields with an adaptive multi-scale generator.",
)
_state = {"debug": False}


@app.callback()
def _main(debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False) -> None:
    _state["debug"] = debug


def _command_line() -> str:
    return "climgen " + " ".join(shlex.quote(arg) for arg in sys.argv[1:])


def _parse_covariates(specs: list[str] | None) -> dict:
    from climgen.io.open import open_covariate, parse_covariate

    covariates = {}
    for spec in specs or []:
        name, path, variable = parse_covariate(spec)
        covariates[name] = open_covariate(path, variable)
    return covariates


def _parse_attributes(specs: list[str] | None) -> dict | None:
    """``KEY=VALUE`` global attributes (creator_name=..., license=...) to {KEY: VALUE}."""
    from climgen.errors import ConfigError

    attributes = {}
    for spec in specs or []:
        key, equals, value = spec.partition("=")
        if not (key.strip() and equals):
            raise ConfigError(f"--attribute takes KEY=VALUE (e.g. creator_name='A. Person'), got {spec!r}")
        attributes[key.strip()] = value
    return attributes or None


def _parse_bounds(specs: list[str] | None) -> dict | None:
    """``NAME=LOWER:UPPER`` (either side may be empty: no limit) to {NAME: (LOWER, UPPER)}."""
    from climgen.errors import ConfigError

    bounds = {}
    for spec in specs or []:
        name, equals, limits = spec.partition("=")
        lower, colon, upper = limits.partition(":")
        try:
            if not (name and equals and colon):
                raise ValueError
            bounds[name] = tuple(float(v) if v.strip() else None for v in (lower, upper))
        except ValueError:
            raise ConfigError(f"--bounds takes NAME=LOWER:UPPER (e.g. pr=0: or sftlf=0:1), got {spec!r}") from None
    return bounds or None


def _parse_order(specs: list[str] | None) -> tuple | None:
    """``LOW,MID,HIGH`` chains (``none``: no chain at all) to a tuple of name tuples; None
    without any (chains from the metadata)."""
    from climgen.errors import ConfigError

    if not specs:
        return None
    if [spec.strip().lower() for spec in specs] == ["none"]:
        return ()
    chains = tuple(tuple(name.strip() for name in spec.split(",")) for spec in specs)
    if any(len(chain) < 2 or "" in chain for chain in chains):
        raise ConfigError(f"--order takes LOW,HIGH or LOW,MID,HIGH (e.g. tasmin,tas,tasmax) or none, got {list(specs)}")
    return chains


def _parse_gain(text: str) -> float | str:
    """``auto`` or a number, for ``--residual-gain`` (the range is checked with the config)."""
    from climgen.errors import ConfigError

    if text.strip().lower() == "auto":
        return "auto"
    try:
        return float(text)
    except ValueError:
        raise ConfigError(f"--residual-gain takes 'auto' or a number from 0 to 1 (up to 2), got {text!r}") from None


def _summary(result, seconds: float, source_shape: tuple[int, int]) -> str:
    import json

    import numpy as np

    depth = result["refinement_depth"].values
    counts = {int(k): int(v) for k, v in zip(*np.unique(depth, return_counts=True), strict=True)}
    total = sum(counts.values())
    histogram = ", ".join(f"depth {k}: {100 * v / total:.0f}%" for k, v in sorted(counts.items()))
    fine_shape = result["refinement_depth"].shape
    from climgen.conservation import format_bounds
    from climgen.pipeline import depth_policy_text
    from climgen.skill import detail_kept

    provenance = json.loads(result.attrs["climgen_provenance"])
    compute = provenance["compute"]
    policy = depth_policy_text(provenance.get("depth_policy", {}))
    if policy:
        histogram += f" ({policy})"
    bounded = [f"{name} {format_bounds((b['lower'], b['upper']))}" for name, b in provenance.get("physical_bounds", {}).items()]
    ordered = [" <= ".join(chain) for chain in provenance.get("ordered_variables", [])]
    return (
        f"grid {source_shape[0]}x{source_shape[1]} -> {fine_shape[0]}x{fine_shape[1]}; "
        f"refinement depth (share of fine cells): {histogram}; "
        f"compute {compute['macs'] / 1e9:.2f} GMAC ({100 * compute['fraction_of_uniform']:.0f}% of uniform); "
        + (f"kept within {', '.join(bounded)}; " if bounded else "")
        + (f"kept in order {', '.join(ordered)}; " if ordered else "")
        + ("blocks match by area-weighted means; " if provenance.get("conservation") == "area" else "")
        + "".join(f"{line}; " for line in detail_kept(provenance.get("residual_gains", {})))
        + f"{seconds:.1f} s"
    )


_Workers = Annotated[int | None, typer.Option(help="Start a local dask cluster of N worker processes.")]
_Scheduler = Annotated[str | None, typer.Option(help="Attach to a running dask scheduler (tcp://host:port).")]
_RegionTiles = Annotated[int, typer.Option(help="Tiles per dask task side.")]
_TimeChunk = Annotated[int, typer.Option(help="Time steps per dask task.")]
_Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]
_Wait = Annotated[
    bool, typer.Option("--wait", help="If another climgen process is writing the output, wait for it instead of stopping.")
]
_Device = Annotated[str, typer.Option(help="Where tasks run the model: auto (a GPU when the worker has one), cpu, cuda.")]
_Attribute = Annotated[
    list[str] | None,
    typer.Option(
        "--attribute",
        help="Global attribute KEY=VALUE of the output (creator_name, creator_email, institution, license, id...); "
        "repeatable. Catalogues (ACDD-1.3) look for who made the data and under which licence: climgen cannot know it.",
    ),
]


def _stream(ds, output: Path, config, covariates: dict, options, overwrite: bool, dry_run: bool = False) -> None:
    """Run (or with ``dry_run`` only plan) a streaming job and print what it did."""
    import xarray as xr

    from climgen.streaming import run

    started = time.perf_counter()
    job = run(ds, output, config, covariates, options, overwrite=overwrite, command=_command_line(), dry_run=dry_run)
    if dry_run:
        typer.echo(job.describe())
        return
    if not job.tasks:
        typer.echo(f"{output} is already complete (job {job.job_id[:16]}); nothing to do")
        return
    with xr.open_dataset(output, engine="zarr" if output.suffix == ".zarr" else None) as result:
        typer.echo(f"wrote {output}: " + _summary(result, time.perf_counter() - started, job.plan.input_shape))


@app.command()
def synthesize(
    input: Annotated[Path, typer.Argument(help="Coarse NetCDF file or zarr store.")],
    output: Annotated[Path, typer.Argument(help="Output path ending in .nc or .zarr.")],
    factor: Annotated[int, typer.Option("--factor", "-f", help="Refinement factor: 2, 4, 8 or 16.")] = 4,
    variables: Annotated[str | None, typer.Option(help="Comma-separated variables (default: all on the grid).")] = None,
    covariate: Annotated[list[str] | None, typer.Option(help="Static fine covariate NAME=FILE[:VAR]; repeatable.")] = None,
    model: Annotated[str, typer.Option(help="'default' or a safetensors checkpoint path.")] = "default",
    seed: Annotated[int, typer.Option(help="Seed of every noise map.")] = 0,
    members: Annotated[int, typer.Option(help="Ensemble members (realization dimension).")] = 1,
    uniform: Annotated[bool, typer.Option("--uniform", help="Refine every tile to full depth.")] = False,
    budget: Annotated[
        float | None, typer.Option(help="Compute budget as a fraction of full depth (0, 1], spent by predicted gain.")
    ] = None,
    tolerance: Annotated[
        float | None,
        typer.Option(help="Stop a tile where deeper stages would remove less than this share of full depth's error (0.0025)."),
    ] = None,
    quality: Annotated[
        float | None, typer.Option(help="RMSE within 1/QUALITY of full depth's, e.g. 0.995 (sets the tolerance).")
    ] = None,
    bounds: Annotated[
        list[str] | None,
        typer.Option(
            help="Physical limits NAME=LOWER:UPPER kept by the refined values (pr=0:, sftlf=0:1; NAME=: for none); "
            "repeatable. Default: from standard_name and valid_range."
        ),
    ] = None,
    order: Annotated[
        list[str] | None,
        typer.Option(
            help="Variables kept in order in every cell, lowest first: LOW,HIGH or LOW,MID,HIGH (tasmin,tas,tasmax); "
            "repeatable; 'none' for no order. Default: from names and cell_methods."
        ),
    ] = None,
    conservation: Annotated[
        str,
        typer.Option(
            help="Blocks average to the coarse value over their cells alike ('cells') or weighted by cell area "
            "('area': for coarse data from conservative regridding)."
        ),
    ] = "cells",
    residual_gain: Annotated[
        str,
        typer.Option(
            help="Share of the model's learned detail kept: 'auto' (tested on each variable's coarse field, damped "
            "only where that cuts the error) or a number, 0 (bicubic with exact block means) to 1 (as trained)."
        ),
    ] = "auto",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing output.")] = False,
    workers: _Workers = None,
    scheduler: _Scheduler = None,
    region_tiles: _RegionTiles = 4,
    time_chunk: _TimeChunk = 8,
    quiet: _Quiet = False,
    wait: _Wait = False,
    device: _Device = "auto",
    attribute: _Attribute = None,
) -> None:
    """Refine INPUT by FACTOR and write a CF-compliant OUTPUT.

    The work streams through dask tasks into the output; rerun the same command after an
    interruption to finish only what is missing.
    """
    from climgen.io.open import open_input
    from climgen.pipeline import make_config
    from climgen.streaming import StreamOptions

    config = make_config(
        variables=variables,
        model=model,
        factor=factor,
        seed=seed,
        members=members,
        adaptive=not uniform,
        budget=budget,
        quality=quality,
        tolerance=tolerance,
        bounds=_parse_bounds(bounds),
        order=_parse_order(order),
        conservation=conservation,
        residual_gain=_parse_gain(residual_gain),
        attributes=_parse_attributes(attribute),
    )
    options = StreamOptions(region_tiles, time_chunk, workers, scheduler, progress=not quiet, device=device, wait=wait)
    with open_input(input) as ds:
        _stream(ds, output, config, _parse_covariates(covariate), options, overwrite)


@app.command()
def run(
    recipe: Annotated[Path, typer.Argument(help="Batch recipe (YAML): input, output, options, chunks, cluster.")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan (tiles, depths, cost, size) and stop.")] = False,
    output: Annotated[Path | None, typer.Option("--output", help="Write here instead of the recipe's output.")] = None,
    workers: _Workers = None,
    scheduler: _Scheduler = None,
    quiet: _Quiet = False,
    wait: _Wait = False,
    device: _Device = "auto",
) -> None:
    """Run a batch refinement recipe (resumable: rerun it to finish an interrupted job)."""
    from climgen.io.open import open_covariate, open_inputs, parse_covariate
    from climgen.jobs import load_run_recipe
    from climgen.pipeline import make_config
    from climgen.streaming import StreamOptions

    job = load_run_recipe(recipe)
    if job.fetch is not None:
        from climgen.io.earthdata import fetch as fetch_cube
        from climgen.jobs import fetch_request

        request, cube = fetch_request(job.fetch), job.resolve(job.fetch.cube)
        if dry_run:
            pending = "" if cube.exists() else " (not fetched yet; the refinement plan needs the cube)"
            typer.echo(
                f"fetch       {request.collection.short_name} {','.join(request.variables)} {request.bbox} "
                f"{request.start}..{request.end} -> {cube}{pending}"
            )
            if not cube.exists():
                return
        else:
            cube.parent.mkdir(parents=True, exist_ok=True)
            typer.echo(fetch_cube(request, cube, log=lambda message: typer.echo(message, err=True)).summary())
    model = str(job.resolve(job.model)) if job.model != "default" else "default"
    config = make_config(**(job.synthesis_options() | {"model": model}))
    covariates = {}
    for name, spec in job.covariates.items():
        _, path, variable = parse_covariate(f"{name}={spec}")
        covariates[name] = open_covariate(job.resolve(str(path)), variable)
    cluster = job.cluster
    options = StreamOptions(
        job.chunks.region_tiles,
        job.chunks.time_chunk,
        workers or (None if scheduler else cluster.workers),
        scheduler or (None if workers else cluster.scheduler),
        progress=not quiet,
        device=device,
        wait=wait,
    )
    output = output.resolve() if output else job.resolve(job.output)
    if not dry_run:
        output.parent.mkdir(parents=True, exist_ok=True)
    with open_inputs(job.input_paths()) as ds:
        _stream(ds, output, config, covariates, options, job.overwrite, dry_run)


DEMO_ATTRIBUTES = {
    "comment": "climgen demo: the embedded sample refined with the shipped default model",
    "acknowledgment": "Input: MPI-ESM-LR near-surface air temperature (CMIP5) and orography from the NCL sample data, "
    "copyright 2013 University Corporation for Atmospheric Research (COPYRIGHT-UCAR in the climgen package)",
    "license": "Input data: BSD-4-Clause (COPYRIGHT-UCAR); refinement by climgen: BSD-3-Clause",
}
"""What the demo can say of its own output; who made it is the user's to add (--attribute)."""


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", help="Folder for the demo NetCDF and PNG.")] = Path("climgen-demo"),
    factor: Annotated[int, typer.Option(help="Refinement factor.")] = 4,
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
    overwrite: Annotated[bool, typer.Option("--overwrite/--no-overwrite", help="Replace earlier demo output.")] = True,
    attribute: _Attribute = None,
) -> None:
    """Refine the embedded sample (CMIP5 temperature over Africa, orography covariate)."""
    import xarray as xr

    from climgen.io.cf import encoding_for
    from climgen.io.write import check_output, write_dataset
    from climgen.pipeline import synthesize as run
    from climgen.plotting import plot_refinement

    data = resources.files("climgen") / "data"
    out.mkdir(parents=True, exist_ok=True)
    target = check_output(out / f"africa_tas_x{factor}.nc", overwrite)
    started = time.perf_counter()
    with (
        xr.open_dataset(str(data / "africa_tas_monthly_2005.nc")) as ds,
        xr.open_dataset(str(data / "africa_orography_0.44deg.nc")) as orography,
    ):
        result = run(
            ds,
            factor=factor,
            variables=["tas"],
            covariates={"elevation": orography["orog"]},
            seed=seed,
            command=_command_line(),
            attributes=DEMO_ATTRIBUTES | (_parse_attributes(attribute) or {}),
        )
        seconds = time.perf_counter() - started
        write_dataset(result, target, encoding_for(result, ["tas"], (32 * factor, 32 * factor)), overwrite=overwrite)
        picture = plot_refinement(
            ds["tas"].isel(time=0),
            result["tas"].isel(time=0),
            result["refinement_depth"],
            out / f"africa_tas_x{factor}.png",
            title=f"Near-surface air temperature, {str(ds.time.values[0])[:7]}: MPI-ESM-LR refined x{factor} by climgen",
        )
        typer.echo(f"climgen demo: tas {dict(ds['tas'].sizes)} -> {dict(result['tas'].sizes)}")
        typer.echo(_summary(result, seconds, (ds.sizes["lat"], ds.sizes["lon"])))
        typer.echo(f"wrote {target}\nwrote {picture}")


@app.command()
def fetch(
    collection: Annotated[str | None, typer.Option(help="Catalog name or short name (see --list).")] = None,
    variables: Annotated[str | None, typer.Option(help="Comma-separated variables, e.g. T2M,U10M.")] = None,
    bbox: Annotated[
        str | None, typer.Option(help="W,S,E,N in degrees (write --bbox=W,S,E,N when W < 0; W > E crosses the antimeridian).")
    ] = None,
    start: Annotated[str | None, typer.Option(help="First day, YYYY-MM-DD.")] = None,
    end: Annotated[str | None, typer.Option(help="Last day, YYYY-MM-DD (default: start).")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Cube to write (.zarr); granules are cached beside it.")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a different cube at --out.")] = False,
    list_collections: Annotated[bool, typer.Option("--list", help="List the catalog of collections and stop.")] = False,
) -> None:
    """Fetch NASA Earthdata granules into a chunked zarr cube (login from env vars or ~/.netrc)."""
    import datetime as dt

    from climgen.io import earthdata

    if list_collections:
        for key, entry in earthdata.CATALOG.items():
            typer.echo(f"{key:14} {entry.short_name} v{entry.version}: {entry.title}")
            typer.echo(f"{'':14} variables {', '.join(f'{k} [{u}]' for k, (u, _) in entry.variables.items())}; {entry.grid}")
        return
    needed = {"--collection": collection, "--variables": variables, "--bbox": bbox, "--start": start, "--out": out}
    absent = [name for name, value in needed.items() if not value]
    if absent:
        raise ConfigError(f"fetch needs {', '.join(absent)} (or --list)")
    try:
        first = dt.date.fromisoformat(start)
        last = dt.date.fromisoformat(end) if end else first
    except ValueError as err:
        raise ConfigError(f"dates must be YYYY-MM-DD: {err}") from err
    request = earthdata.Request(
        earthdata.find_collection(collection),
        tuple(v for v in variables.split(",") if v),
        earthdata.parse_bbox(bbox),
        first,
        last,
    )
    report = earthdata.fetch(request, out, overwrite=overwrite, log=lambda message: typer.echo(message, err=True))
    typer.echo(report.summary())


@app.command()
def coarsen(
    input: Annotated[Path, typer.Argument(help="Fine NetCDF file or zarr store (the truth).")],
    output: Annotated[Path, typer.Argument(help="Coarse output (.nc).")],
    factor: Annotated[int, typer.Option("--factor", "-f", help="Block size: 2, 4, 8 or 16.")] = 4,
    conservation: Annotated[
        str, typer.Option(help="Block means over cells alike ('cells') or weighted by cell area ('area').")
    ] = "cells",
    overwrite: Annotated[bool, typer.Option("--overwrite")] = False,
) -> None:
    """Block-mean a fine field onto the grid that refining by FACTOR maps back to it."""
    from climgen.grid import coarsen_dataset, find_spatial_axes
    from climgen.io.cf import INPUT_FILE_ATTRS, describe_block_mean, encoding_for_plain, history_line, tidy
    from climgen.io.open import open_input
    from climgen.io.write import check_output, write_dataset

    check_output(output, overwrite)
    with open_input(input) as ds:
        coarse = coarsen_dataset(ds, factor, conservation)
        coarse.attrs = {key: value for key, value in coarse.attrs.items() if key not in INPUT_FILE_ATTRS}
        previous = str(ds.attrs.get("history", "")).strip()
        coarse.attrs["history"] = history_line(_command_line()) + ("\n" + previous if previous else "")
        coarse.attrs.setdefault("title", f"{Path(input).name} block-averaged by {factor} (climgen coarsen)")
        axes = find_spatial_axes(coarse)
        coarse = describe_block_mean(tidy(coarse, axes), axes, factor, conservation)
        write_dataset(coarse, output, encoding_for_plain(coarse), overwrite=overwrite)
    typer.echo(f"wrote {output}")


@app.command()
def evaluate(
    truth: Annotated[Path, typer.Option("--truth", help="Fine truth (NetCDF or zarr).")],
    pred: Annotated[Path, typer.Option("--pred", help="Refined output on the same fine grid.")],
    out: Annotated[Path | None, typer.Option("--out", help="Folder for scores.json and plots.")] = None,
    variables: Annotated[str | None, typer.Option(help="Comma-separated variables (default: the refined ones).")] = None,
    factor: Annotated[int | None, typer.Option(help="Also score bicubic from the truth coarsened by FACTOR.")] = None,
) -> None:
    """Score a refined field against the truth: table on stdout, JSON and plots with --out."""
    import json

    from climgen.evaluation import crop_to_prediction, format_table
    from climgen.evaluation import evaluate as run
    from climgen.grid import find_spatial_axes
    from climgen.io.open import open_input

    with open_input(truth) as whole_truth, open_input(pred) as pred_ds:
        truth_ds = crop_to_prediction(whole_truth, pred_ds)
        axes = find_spatial_axes(whole_truth)
        if truth_ds.sizes != whole_truth.sizes:
            typer.echo(
                f"comparing the truth's first {truth_ds.sizes[axes.y]} x {truth_ds.sizes[axes.x]} cells of "
                f"{whole_truth.sizes[axes.y]} x {whole_truth.sizes[axes.x]} (coarsening dropped the rest)"
            )
        names = [v for v in variables.split(",") if v] if variables else None
        rows = run(truth_ds, pred_ds, names, factor)
        typer.echo(format_table(rows))
        if out is not None:
            from climgen.plotting import plot_evaluation

            out.mkdir(parents=True, exist_ok=True)
            (out / "scores.json").write_text(json.dumps(rows, indent=2) + "\n")
            pictures = plot_evaluation(
                truth_ds, pred_ds, [row["variable"] for row in rows if row["method"] == "prediction"], out, factor
            )
            typer.echo(f"wrote {out / 'scores.json'}" + "".join(f"\nwrote {p}" for p in pictures))


@app.command()
def benchmark(
    truth: Annotated[Path, typer.Option("--truth", help="A real fine field (NetCDF or zarr) to coarsen and refine.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for benchmark.json, benchmark.md and spectra.png.")],
    factor: Annotated[int, typer.Option("--factor", "-f", help="Refinement factor (the GAN and VAE: 4 only).")] = 4,
    variable: Annotated[str | None, typer.Option(help="Variable to compare (default: the only gridded one).")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="Short fine-tuning (60 steps).")] = False,
    pretrained: Annotated[bool, typer.Option("--pretrained", help="Use the shipped models without fine-tuning.")] = False,
    members: Annotated[int, typer.Option(help="Ensemble members for diversity and CRPS.")] = 4,
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
    ablations: Annotated[
        bool, typer.Option("--ablations", help="Also AMSGM ablations: 3x3 blocks only; stage 2 with and without feedback.")
    ] = False,
) -> None:
    """Compare AMSGM, a single-scale GAN, a conditional VAE and bicubic on a real field."""
    from climgen.benchmark import BenchmarkOptions, format_markdown, run_benchmark
    from climgen.grid import check_factor
    from climgen.io.open import open_input

    check_factor(factor)
    with open_input(truth) as ds:
        candidates = [name for name, v in ds.data_vars.items() if v.ndim >= 2 and v.dtype.kind == "f"]
        if variable is None and len(candidates) != 1:
            raise InputError(f"name the variable to compare with --variable (candidates: {candidates})")
        options = BenchmarkOptions(factor, members, pretrained, quick, seed, ablations=ablations)
        rows = run_benchmark(ds.load(), variable or candidates[0], out, options, log=lambda m: typer.echo(m, err=True))
    notes = json.loads((out / "benchmark.json").read_text())
    typer.echo(format_markdown(rows, notes))
    typer.echo(f"wrote {out / 'benchmark.json'}, {out / 'benchmark.md'}, {out / 'spectra.png'}")


@app.command()
def train(
    recipe: Annotated[Path, typer.Argument(help="Training recipe (YAML).")],
    device: Annotated[str | None, typer.Option(help="cpu, cuda or auto (overrides the recipe).")] = None,
    steps: Annotated[int | None, typer.Option(help="Override the pre-training steps.")] = None,
    output: Annotated[str | None, typer.Option(help="Override the checkpoint path (no suffix).")] = None,
    precision: Annotated[
        str | None, typer.Option(help="float32 or bfloat16 (bf16 autocast of the model; overrides the recipe).")
    ] = None,
) -> None:
    """Train a generator as RECIPE says (stage 1: content pre-training) and save it."""
    from climgen.training.recipe import load_recipe

    loaded = load_recipe(recipe)
    updates = {}
    if device:
        if device not in ("cpu", "cuda", "auto"):
            raise ConfigError(f"device must be cpu, cuda or auto, got {device!r}")
        updates["device"] = device
    if precision:
        if precision not in ("float32", "bfloat16"):
            raise ConfigError(f"precision must be float32 or bfloat16, got {precision!r}")
        updates["precision"] = precision
    if output:
        updates["output"] = str(Path(output).resolve())
    if steps:
        updates["pretrain"] = loaded.pretrain.model_copy(
            update={"steps": steps, "validate_every": min(steps, loaded.pretrain.validate_every)}
        )
    loaded = loaded.model_copy(update=updates)
    for source in loaded.data.real_fields + loaded.data.validation_fields:
        if not Path(loaded.resolve(source.path)).exists():
            raise InputError(f"training field not found: {loaded.resolve(source.path)}")
    if loaded.baseline is not None:
        from climgen.training.baselines import train_baseline

        path = train_baseline(loaded, log=typer.echo)
    else:
        from climgen.training.pretrain import pretrain

        path = pretrain(loaded, log=typer.echo)
    typer.echo(f"wrote {path} and {path.with_suffix('.json')}")


@app.command()
def check(file: Annotated[Path, typer.Argument(help="NetCDF file to check against CF-1.8.")]) -> None:
    """Run the offline CF checkers (cfchecks and IOOS compliance-checker) and summarise."""
    from climgen.io.checks import run_checks

    if not file.exists():
        raise InputError(f"file not found: {file}")
    results = run_checks(file)
    for result in results:
        typer.echo(result.summary())
    if not all(result.passed for result in results):
        raise typer.Exit(1)


def _show_warning(message, category, filename, lineno, file=None, line=None, _default=warnings.showwarning) -> None:
    """climgen's own warnings as one line each; other libraries' as usual."""
    from climgen.io.units import UnitsWarning
    from climgen.pipeline import LongitudeWarning, OrderWarning, PhysicalBoundsWarning

    if issubclass(category, (UnitsWarning, PhysicalBoundsWarning, OrderWarning, LongitudeWarning)):
        typer.echo(f"climgen: warning: {message}", err=True)
    else:
        _default(message, category, filename, lineno, file, line)


def main() -> None:
    """Entry point: run the app, turning user errors into one line on stderr."""
    warnings.showwarning = _show_warning
    try:
        code = app(standalone_mode=False)  # returns the code of typer.Exit instead of raising
    except ClimgenError as err:
        if _state["debug"]:
            raise
        typer.echo(f"climgen: error: {err}", err=True)
        sys.exit(2)
    except (typer.Exit, SystemExit) as stop:
        sys.exit(getattr(stop, "exit_code", getattr(stop, "code", 0)))
    except Exception as err:
        # usage errors from the (vendored) click parser: one line too
        if hasattr(err, "format_message") and hasattr(err, "exit_code"):
            typer.echo(f"climgen: error: {err.format_message()} (see climgen --help)", err=True)
            sys.exit(err.exit_code)
        raise
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()

"""Commands that refine: ``synthesize``, ``run`` (a batch recipe) and ``demo``."""

from __future__ import annotations

import time
from importlib import resources
from pathlib import Path
from typing import Annotated

import typer

from climgen.cli.app import app, interrupted
from climgen.cli.options import (
    Attribute,
    Device,
    Precision,
    Quiet,
    RegionTiles,
    Scheduler,
    TimeChunk,
    Wait,
    Workers,
    command_line,
    parse_attributes,
    parse_bounds,
    parse_covariates,
    parse_gain,
    parse_order,
    summary,
)
from climgen.errors import ConfigError


def stream(
    ds, output: Path, config, covariates: dict, options, overwrite: bool, dry_run: bool = False, command: str | None = None
) -> None:
    """Run (or with ``dry_run`` only plan) a streaming job and print what it did; ``command``
    is the history's record of it (default: the command line)."""

    from climgen.streaming import run

    started = time.perf_counter()
    try:
        command = command or command_line()
        job = run(ds, output, config, covariates, options, overwrite=overwrite, command=command, dry_run=dry_run)
    except KeyboardInterrupt:
        from climgen.leftovers import interruption_note

        raise interrupted(interruption_note(output)) from None
    if dry_run:
        typer.echo(job.describe())
        return
    if not job.tasks:
        typer.echo(f"{output} is already complete (job {job.job_id[:16]}); nothing to do")
        return
    from climgen.streaming import open_output

    with open_output(output) as result:
        typer.echo(f"wrote {output}: " + summary(result, time.perf_counter() - started, job.plan.input_shape))


@app.command()
def synthesize(
    input: Annotated[Path, typer.Argument(help="Coarse NetCDF file or zarr store, or a quoted glob of files ('tas_day_*.nc').")],
    output: Annotated[Path, typer.Argument(help="Output path ending in .nc or .zarr.")],
    factor: Annotated[int, typer.Option("--factor", "-f", help="Refinement factor: 2, 4, 8 or 16.")] = 4,
    variables: Annotated[str | None, typer.Option(help="Comma-separated variables (default: all on the grid).")] = None,
    covariate: Annotated[list[str] | None, typer.Option(help="Static fine covariate NAME=FILE[:VAR]; repeatable.")] = None,
    model: Annotated[
        str,
        typer.Option(
            help="'default', a shipped model (amsgm-fast, amsgm-multibranch, cvae-x4, srgan-x4) or a safetensors checkpoint path."
        ),
    ] = "default",
    seed: Annotated[int, typer.Option(help="Seed of every noise map.")] = 0,
    members: Annotated[int, typer.Option(help="Ensemble members (realization dimension).")] = 1,
    uniform: Annotated[bool, typer.Option("--uniform", help="Refine every tile to full depth.")] = False,
    budget: Annotated[
        float | None, typer.Option(help="Compute budget as a fraction of full depth (0, 1], spent by predicted gain.")
    ] = None,
    tolerance: Annotated[
        float | None,
        typer.Option(help="Stop a tile where deeper stages would remove less than this share of full depth's error (0.015)."),
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
            "only where that cuts the error) or a number, 0 (bicubic with exact block means) to 1 (as trained), up to 2."
        ),
    ] = "auto",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing output.")] = False,
    workers: Workers = None,
    scheduler: Scheduler = None,
    region_tiles: RegionTiles = 4,
    time_chunk: TimeChunk = 8,
    quiet: Quiet = False,
    wait: Wait = False,
    device: Device = "auto",
    precision: Precision = "auto",
    attribute: Attribute = None,
) -> None:
    """Refine INPUT by FACTOR and write a CF-compliant OUTPUT.

    The work streams through dask tasks into the output; rerun the same command after an
    interruption to finish only what is missing.
    """
    from climgen.io.open import open_inputs
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
        bounds=parse_bounds(bounds),
        order=parse_order(order),
        conservation=conservation,
        residual_gain=parse_gain(residual_gain),
        attributes=parse_attributes(attribute),
        precision=precision,
    )
    options = StreamOptions(region_tiles, time_chunk, workers, scheduler, progress=not quiet, device=device, wait=wait)
    with open_inputs(_input_files(input)) as ds:
        stream(ds, output, config, parse_covariates(covariate), options, overwrite)


def _input_files(input: Path) -> list[Path]:
    """The input, or the files a glob (quoted, so the shell leaves it) matches, in sorted order:
    combined by their coordinates, as a recipe's ``input:`` glob is."""
    import glob

    from climgen.errors import InputError

    if input.exists() or not glob.has_magic(str(input)):
        return [input]
    matches = sorted(glob.glob(str(input.expanduser())))
    if not matches:
        raise InputError(f"no input matches {input}")
    return [Path(match) for match in matches]


@app.command()
def run(
    recipe: Annotated[Path, typer.Argument(help="Batch recipe (YAML): input, output, options, chunks, cluster.")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan (tiles, depths, cost, size) and stop.")] = False,
    output: Annotated[Path | None, typer.Option("--output", help="Write here instead of the recipe's output.")] = None,
    workers: Workers = None,
    scheduler: Scheduler = None,
    quiet: Quiet = False,
    wait: Wait = False,
    device: Device = "auto",
    precision: Annotated[
        str | None, typer.Option(help="The model's precision, overriding the recipe's: auto, float32 or bfloat16.")
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an existing output (as overwrite: true in the recipe).")
    ] = False,
) -> None:
    """Run a batch refinement recipe (resumable: rerun it to finish an interrupted job)."""
    from climgen.io.open import open_covariate, open_inputs, parse_covariate
    from climgen.jobs import load_run_recipe
    from climgen.pipeline import make_config
    from climgen.streaming import StreamOptions

    if workers is not None and workers < 1:  # before any download
        raise ConfigError(f"workers must be >= 1, got {workers}")
    job = load_run_recipe(recipe)
    from climgen.models.checkpoint import RETIRED, SHIPPED

    # options checked before any download: a shipped name as given; a checkpoint path relative to the recipe's folder
    model = job.model if job.model in SHIPPED or job.model in RETIRED else str(job.resolve(job.model))
    config = make_config(**(job.synthesis_options() | {"model": model} | ({"precision": precision} if precision else {})))

    def open_covariates() -> dict:
        covariates = {}
        for name, spec in job.covariates.items():
            _, path, variable = parse_covariate(f"{name}={spec}")
            covariates[name] = open_covariate(job.resolve(str(path)), variable, name)
        return covariates

    # a run checks its covariates before it downloads; a dry run shows the fetch even before they exist
    covariates = {} if dry_run else open_covariates()
    if job.fetch is not None:
        from climgen.io.earthdata import fetch as fetch_cube
        from climgen.io.earthdata import holds
        from climgen.jobs import fetch_request

        request, cube = fetch_request(job.fetch), job.resolve(job.fetch.cube)
        if dry_run:
            pending = "" if cube.exists() else " (not fetched yet; the refinement plan needs the cube)"
            typer.echo(
                f"fetch       {request.collection.short_name} {','.join(request.variables)} {request.bbox} "
                f"{request.start}..{request.end} -> {cube}{pending}"
            )
            if not cube.exists():
                for name, spec in job.covariates.items():  # what a run would stop at before its download
                    path = job.resolve(str(parse_covariate(f"{name}={spec}")[1]))
                    if not path.exists():
                        typer.echo(f"covariate   {name}: {path} not found (a run stops here, before the download)")
                return
        elif holds(request, cube):  # a rerun (to resume the refinement) needs no network
            typer.echo(f"{cube} holds this request already: refined as it is (remove it to fetch again)", err=True)
        else:
            made = not cube.parent.exists()
            cube.parent.mkdir(parents=True, exist_ok=True)
            replace = overwrite or job.overwrite  # a cube fetched for another request, as the output
            try:
                fetched = fetch_cube(request, cube, overwrite=replace, log=lambda message: typer.echo(message, err=True))
            except BaseException as stopped:
                if made and not any(cube.parent.iterdir()):  # a refused download leaves no empty folder behind
                    cube.parent.rmdir()
                if isinstance(stopped, KeyboardInterrupt):
                    from climgen.io.earthdata import interruption_note

                    raise interrupted(interruption_note(cube)) from None
                raise
            typer.echo(fetched.summary())
    if dry_run:
        covariates = open_covariates()
    cluster = job.cluster
    options = StreamOptions(
        job.chunks.region_tiles,
        job.chunks.time_chunk,
        workers if workers is not None else (None if scheduler else cluster.workers),
        scheduler or (None if workers else cluster.scheduler),
        progress=not quiet,
        device=device,
        wait=wait,
    )
    output = output.resolve() if output else job.resolve(job.output)
    if not dry_run:
        output.parent.mkdir(parents=True, exist_ok=True)
    with open_inputs(job.input_paths()) as ds:
        # the recipe by its absolute path and content: the command line names it as typed
        import hashlib

        digest = hashlib.sha256(Path(recipe).read_bytes()).hexdigest()
        command = f"{command_line()} (recipe {Path(recipe).resolve()}, sha256 {digest})"
        stream(ds, output, config, covariates, options, overwrite or job.overwrite, dry_run, command)


DEMO_ATTRIBUTES = {
    "comment": "climgen demo: the embedded sample refined with the shipped default model",
    "acknowledgment": "Input: MPI-ESM-LR near-surface air temperature (CMIP5) and orography from the NCL sample data, "
    "copyright 2013 University Corporation for Atmospheric Research (COPYRIGHT-UCAR in the climgen package)",
    "license": "Input data: BSD-4-Clause (COPYRIGHT-UCAR); refinement by climgen: BSD-3-Clause",
}
"""What the demo can say of its own output; who made it is the user's to add (--attribute, or
once for every output in the standing attributes file, climgen.io.acdd.attributes_file)."""

CMIP_TAS_HEIGHT = {"standard_name": "height", "long_name": "height", "units": "m", "axis": "Z", "positive": "up"}
"""CMIP5's tas is the air temperature 2 m above the surface (the Amon table's scalar ``height``
coordinate, which the sample's subset lost); the demo restores it so the output states it."""


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", help="Folder for the demo NetCDF and PNG.")] = Path("climgen-demo"),
    factor: Annotated[int, typer.Option(help="Refinement factor.")] = 4,
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
    overwrite: Annotated[bool, typer.Option("--overwrite/--no-overwrite", help="Replace earlier demo output.")] = True,
    precision: Precision = "auto",
    attribute: Attribute = None,
) -> None:
    """Refine the embedded sample (CMIP5 temperature over Africa, orography covariate)."""
    import xarray as xr

    from climgen.grid import check_factor
    from climgen.io.encoding import encoding_for
    from climgen.io.write import check_folder, check_output, write_dataset
    from climgen.pipeline import synthesize as run
    from climgen.plotting import plot_refinement

    check_factor(factor)  # before the folder is made
    data = resources.files("climgen") / "data"
    out = check_folder(out)
    target = check_output(out / f"africa_tas_x{factor}.nc", overwrite)
    started = time.perf_counter()
    with (
        xr.open_dataset(str(data / "africa_tas_monthly_2005.nc")) as ds,
        xr.open_dataset(str(data / "africa_orography_0.44deg.nc")) as orography,
    ):
        result = run(
            ds.assign_coords(height=xr.DataArray(2.0, attrs=CMIP_TAS_HEIGHT)),
            factor=factor,
            variables=["tas"],
            covariates={"elevation": orography["orog"]},
            seed=seed,
            precision=precision,
            command=command_line(),
            attributes=DEMO_ATTRIBUTES | (parse_attributes(attribute) or {}),
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
        typer.echo(summary(result, seconds, (ds.sizes["lat"], ds.sizes["lon"])))
        typer.echo(f"wrote {target}\nwrote {picture}")

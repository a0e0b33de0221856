"""Commands around the data: ``fetch`` (NASA Earthdata), ``coarsen`` and ``check`` (CF)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from climgen.cli.app import app, interrupted
from climgen.cli.options import command_line
from climgen.errors import ConfigError, InputError


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
    try:
        report = earthdata.fetch(request, out, overwrite=overwrite, log=lambda message: typer.echo(message, err=True))
    except KeyboardInterrupt:
        raise interrupted(earthdata.interruption_note(out)) from None
    typer.echo(report.summary())


@app.command()
def coarsen(
    input: Annotated[Path, typer.Argument(help="Fine NetCDF file or zarr store (the truth).")],
    output: Annotated[Path, typer.Argument(help="Coarse output (.nc or .zarr).")],
    factor: Annotated[int, typer.Option("--factor", "-f", help="Block size: 2, 4, 8 or 16.")] = 4,
    conservation: Annotated[
        str, typer.Option(help="Block means over cells alike ('cells') or weighted by cell area ('area').")
    ] = "cells",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing output.")] = False,
) -> None:
    """Block-mean a fine field onto the grid that refining by FACTOR maps back to it."""
    from climgen.grid import coarsen_dataset, find_spatial_axes
    from climgen.io.cf import ANCILLARY_ATTRS, describe_block_mean, history_line, tidy
    from climgen.io.encoding import encoding_for_plain
    from climgen.io.input_attrs import coarse_grid_keys, coarsened_attrs
    from climgen.io.open import open_input
    from climgen.io.write import check_output, write_dataset

    check_output(output, overwrite, [input])
    with open_input(input) as ds:
        # a climgen output coarsened is a new coarse field: not the refinement's maps and record
        ds = ds.drop_vars([name for name in ANCILLARY_ATTRS if name in ds.variables])
        for variable in ds.variables.values():
            for key in ("ancillary_variables", "coordinates"):
                kept = [name for name in str(variable.attrs.get(key, "")).split() if name not in ANCILLARY_ATTRS]
                if key in variable.attrs and not kept:
                    del variable.attrs[key]
                elif key in variable.attrs:
                    variable.attrs[key] = " ".join(kept)
            variable.encoding.pop("coordinates", None)
        coarse = coarsen_dataset(ds, factor, conservation)
        axes = find_spatial_axes(coarse)
        coarse.attrs = coarsened_attrs(coarse.attrs, factor, (coarse.sizes[axes.y], coarse.sizes[axes.x]))
        for variable in coarse.data_vars.values():  # a GRIB grid's description is the fine grid's
            for key in coarse_grid_keys(variable.attrs):
                variable.attrs.pop(key)
        previous = str(ds.attrs.get("history", "")).strip()
        coarse.attrs["history"] = history_line(command_line()) + ("\n" + previous if previous else "")
        coarse.attrs.setdefault("title", f"{Path(input).name} block-averaged by {factor} (climgen coarsen)")
        coarse = describe_block_mean(tidy(coarse, axes), axes, factor, conservation)
        write_dataset(coarse, output, encoding_for_plain(coarse), overwrite=overwrite)
        parts = [
            f"the last {ds.sizes[name] % factor} {kind}{'s' if ds.sizes[name] % factor > 1 else ''} ({name})"
            for name, kind in ((axes.y, "row"), (axes.x, "column"))
            if ds.sizes[name] % factor
        ]
    note = f"; left out, as they do not fill a {factor} x {factor} block: {' and '.join(parts)}" if parts else ""
    typer.echo(f"wrote {output}{note}")


@app.command()
def check(
    file: Annotated[Path, typer.Argument(help="NetCDF file to check against CF-1.8.")],
    acdd: Annotated[
        bool, typer.Option("--acdd/--no-acdd", help="Also the ACDD-1.3 discovery check (catalogues); medium = warnings.")
    ] = False,
) -> None:
    """Run the offline CF checkers (cfchecks and IOOS compliance-checker) and summarise."""
    from climgen.io.checks import run_checks

    if not file.exists():
        raise InputError(f"file not found: {file}")
    results = run_checks(file, acdd=acdd)
    for result in results:
        typer.echo(result.summary())
    if not all(result.passed for result in results):
        raise typer.Exit(1)

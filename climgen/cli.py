"""The ``climgen`` command line: demo, synthesize, coarsen, train, check.

User errors (:class:`climgen.errors.ClimgenError`) print one line on stderr and exit with 2;
``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import shlex
import sys
import time
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


def _summary(result, seconds: float, source_shape: tuple[int, int]) -> str:
    import json

    import numpy as np

    depth = result["refinement_depth"].values
    counts = {int(k): int(v) for k, v in zip(*np.unique(depth, return_counts=True), strict=True)}
    total = sum(counts.values())
    histogram = ", ".join(f"depth {k}: {100 * v / total:.0f}%" for k, v in sorted(counts.items()))
    fine_shape = result["refinement_depth"].shape
    compute = json.loads(result.attrs["climgen_provenance"])["compute"]
    return (
        f"grid {source_shape[0]}x{source_shape[1]} -> {fine_shape[0]}x{fine_shape[1]}; "
        f"refinement depth (share of fine cells): {histogram}; "
        f"compute {compute['macs'] / 1e9:.2f} GMAC ({100 * compute['fraction_of_uniform']:.0f}% of uniform); {seconds:.1f} s"
    )


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
    budget: Annotated[float | None, typer.Option(help="Compute budget as a fraction of full depth (0, 1].")] = None,
    quality: Annotated[float | None, typer.Option(help="Calibrate depth to this SSIM quality target, e.g. 0.995.")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing output.")] = False,
) -> None:
    """Refine INPUT by FACTOR and write a CF-compliant OUTPUT."""
    from climgen.io.cf import encoding_for, refined_variables
    from climgen.io.open import open_input
    from climgen.io.write import check_output, output_format, write_dataset
    from climgen.pipeline import synthesize as run

    check_output(output, overwrite)
    started = time.perf_counter()
    with open_input(input) as ds:
        covariates = _parse_covariates(covariate)
        result = run(
            ds,
            factor=factor,
            variables=variables,
            covariates=covariates,
            model=model,
            seed=seed,
            members=members,
            adaptive=not uniform,
            budget=budget,
            quality=quality,
            command=_command_line(),
        )
        refined = refined_variables(result)
        encoding = encoding_for(result, refined, (32 * factor, 32 * factor), netcdf=output_format(output) == "netcdf")
        write_dataset(result, output, encoding, overwrite=overwrite)
        coarse_shape = tuple(ds.sizes[dim] for dim in result["refinement_depth"].dims)
        typer.echo(f"wrote {output}: " + _summary(result, time.perf_counter() - started, coarse_shape))


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", help="Folder for the demo NetCDF and PNG.")] = Path("climgen-demo"),
    factor: Annotated[int, typer.Option(help="Refinement factor.")] = 4,
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
    overwrite: Annotated[bool, typer.Option("--overwrite/--no-overwrite", help="Replace earlier demo output.")] = True,
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
            ds, factor=factor, variables=["tas"], covariates={"elevation": orography["orog"]}, seed=seed, command=_command_line()
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
def coarsen(
    input: Annotated[Path, typer.Argument(help="Fine NetCDF file or zarr store (the truth).")],
    output: Annotated[Path, typer.Argument(help="Coarse output (.nc).")],
    factor: Annotated[int, typer.Option("--factor", "-f", help="Block size: 2, 4, 8 or 16.")] = 4,
    overwrite: Annotated[bool, typer.Option("--overwrite")] = False,
) -> None:
    """Block-mean a fine field onto the grid that refining by FACTOR maps back to it."""
    from climgen.grid import coarsen_dataset, find_spatial_axes
    from climgen.io.cf import describe_block_mean, encoding_for_plain, history_line, tidy
    from climgen.io.open import open_input
    from climgen.io.write import check_output, write_dataset

    check_output(output, overwrite)
    with open_input(input) as ds:
        coarse = coarsen_dataset(ds, factor)
        previous = str(ds.attrs.get("history", "")).strip()
        coarse.attrs["history"] = history_line(_command_line()) + ("\n" + previous if previous else "")
        axes = find_spatial_axes(coarse)
        coarse = describe_block_mean(tidy(coarse, axes), axes, factor)
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

    from climgen.evaluation import evaluate as run
    from climgen.evaluation import format_table
    from climgen.io.open import open_input

    with open_input(truth) as truth_ds, open_input(pred) as pred_ds:
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
def train(
    recipe: Annotated[Path, typer.Argument(help="Training recipe (YAML).")],
    device: Annotated[str | None, typer.Option(help="cpu, cuda or auto (overrides the recipe).")] = None,
    steps: Annotated[int | None, typer.Option(help="Override the pre-training steps.")] = None,
    output: Annotated[str | None, typer.Option(help="Override the checkpoint path (no suffix).")] = None,
) -> None:
    """Train a generator as RECIPE says (stage 1: content pre-training) and save it."""
    from climgen.training.recipe import load_recipe

    loaded = load_recipe(recipe)
    updates = {}
    if device:
        if device not in ("cpu", "cuda", "auto"):
            raise ConfigError(f"device must be cpu, cuda or auto, got {device!r}")
        updates["device"] = device
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


def main() -> None:
    """Entry point: run the app, turning user errors into one line on stderr."""
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

"""Commands that measure and train: ``evaluate``, ``benchmark`` and ``train``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from climgen.cli.app import app, interrupted
from climgen.errors import ConfigError, InputError


@app.command()
def evaluate(
    truth: Annotated[Path, typer.Option("--truth", help="Fine truth (NetCDF or zarr).")],
    pred: Annotated[Path, typer.Option("--pred", help="Refined output on the same fine grid.")],
    out: Annotated[Path | None, typer.Option("--out", help="Folder for scores.json and plots.")] = None,
    variables: Annotated[str | None, typer.Option(help="Comma-separated variables (default: the refined ones).")] = None,
    factor: Annotated[
        int | None,
        typer.Option(
            help="Also score bicubic from the truth coarsened by FACTOR (default: the prediction's own factor, from "
            "its provenance, when it has one)."
        ),
    ] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace the scores and plots already in --out.")] = False,
) -> None:
    """Score a refined field against the truth: table on stdout, JSON and plots with --out."""
    from climgen.evaluation import aligned_truth, format_table, scores_json
    from climgen.evaluation import evaluate as run
    from climgen.grid import find_spatial_axes
    from climgen.io.open import open_input

    if out is not None:
        from climgen.io.write import check_folder

        check_folder(out, make=False)  # a file where the folder should go: said before any scoring
        if (out / "scores.json").exists() and not overwrite:  # another model's scores, perhaps: kept
            from climgen.errors import OutputExistsError

            raise OutputExistsError(f"{out / 'scores.json'} exists; pass --overwrite to replace the scores and plots in {out}")
    with open_input(truth) as whole_truth, open_input(pred) as pred_ds:
        truth_ds = aligned_truth(whole_truth, pred_ds)
        axes = find_spatial_axes(whole_truth)
        if truth_ds.sizes != whole_truth.sizes:
            typer.echo(
                f"comparing the {truth_ds.sizes[axes.y]} x {truth_ds.sizes[axes.x]} cells of the truth's "
                f"{whole_truth.sizes[axes.y]} x {whole_truth.sizes[axes.x]} that the prediction covers"
            )
        names = [v for v in variables.split(",") if v] if variables else None
        if factor is None:  # bicubic beside the prediction whenever the prediction says its factor
            import json

            factor = json.loads(pred_ds.attrs.get("climgen_provenance", "{}")).get("factor")
        rows = run(truth_ds, pred_ds, names, factor)
        typer.echo(format_table(rows))
        if out is not None:
            from climgen.plotting import plot_evaluation

            check_folder(out)
            partial = out / ".scores.json.partial"  # written whole, then renamed: never half a file
            partial.write_text(scores_json(rows))
            partial.replace(out / "scores.json")
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
    """Compare AMSGM, a single-scale GAN, a conditional VAE and bicubic on a real field.

    The truth is split into halves along x: each learned method is fine-tuned on the western half (300 steps; --pretrained keeps them as shipped), and every method is scored on the eastern half, coarsened by block means and refined back.
    """
    from climgen.benchmark import BenchmarkOptions, format_markdown, run_benchmark
    from climgen.grid import check_factor, find_spatial_axes
    from climgen.inputs import select_variables
    from climgen.io.open import open_input

    check_factor(factor)
    if members < 2:
        raise ConfigError(f"members must be at least 2 (the samples scored for diversity and CRPS), got {members}")
    with open_input(truth) as ds:
        # the gridded fields synthesize would refine (not bounds, 2-D latitude and longitude)
        candidates = select_variables(ds, find_spatial_axes(ds), None) if variable is None else [variable]
        if variable is None and len(candidates) != 1:
            raise InputError(f"name the variable to compare with --variable (candidates: {candidates})")
        options = BenchmarkOptions(factor, members, pretrained, quick, seed, ablations=ablations)
        try:
            rows = run_benchmark(ds.load(), variable or candidates[0], out, options, log=lambda m: typer.echo(m, err=True))
        except KeyboardInterrupt:
            raise interrupted("interrupted: a benchmark keeps nothing to resume; a rerun starts from the beginning") from None
    notes = json.loads((out / "benchmark.json").read_text())
    typer.echo(format_markdown(rows, notes))
    typer.echo(f"wrote {out / 'benchmark.json'}, {out / 'benchmark.md'}, {out / 'spectra.png'}")


@app.command()
def train(
    recipe: Annotated[Path, typer.Argument(help="Training recipe (YAML).")],
    device: Annotated[str | None, typer.Option(help="cpu, cuda or auto (overrides the recipe).")] = None,
    steps: Annotated[
        int | None,
        typer.Option(
            help="Override the steps: a baseline's, else the pre-training's (or, in a recipe of the adversarial stage "
            "alone, that stage's); a short run validates at its end and saves its state every STEPS/4."
        ),
    ] = None,
    output: Annotated[str | None, typer.Option(help="Override the checkpoint path (no suffix).")] = None,
    precision: Annotated[
        str | None, typer.Option(help="float32 or bfloat16 (bf16 autocast of the model; overrides the recipe).")
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace a finished checkpoint at the output.")] = False,
) -> None:
    """Train what RECIPE describes (the hierarchical generator, the multi-branch one or a baseline) and save it."""
    from pydantic import ValidationError

    from climgen._torch import check_device_name
    from climgen.training.recipe import load_recipe
    from climgen.yamlconfig import validation_message

    loaded = load_recipe(recipe)
    updates = {}
    if device:
        updates["device"] = check_device_name(device)
    if precision:
        if precision not in ("float32", "bfloat16"):
            raise ConfigError(f"precision must be float32 or bfloat16, got {precision!r}")
        updates["precision"] = precision
    if output:
        updates["output"] = str(Path(output).resolve()) + ("/" if output.endswith(("/", "\\")) else "")
    if steps is not None:
        if steps < 1:
            raise ConfigError(f"--steps must be at least 1, got {steps}")
        if loaded.baseline is not None:  # a baseline trains its own steps: the pre-training's are unused
            updates["baseline"] = loaded.baseline.model_dump() | {
                "steps": steps,
                "validate_every": min(steps, loaded.baseline.validate_every),
            }
        else:
            # the stage the recipe trains: its pre-training, or (a recipe of the adversarial stage
            # alone) that stage; a short run saves its state on the way, so that it resumes too
            stage = "adversarial" if not loaded.pretrain.steps and loaded.adversarial.steps else "pretrain"
            settings = getattr(loaded, stage)
            updates[stage] = settings.model_dump() | {"steps": steps, "validate_every": min(steps, settings.validate_every)}
            if stage == "pretrain":
                updates[stage]["checkpoint_every"] = min(settings.checkpoint_every, max(1, steps // 4))
    try:  # validated again, as if the recipe said so
        loaded = type(loaded).model_validate(loaded.model_dump(exclude_unset=True) | updates)
    except ValidationError as err:
        raise ConfigError(validation_message(err)) from err
    from climgen.training.run import train as run_recipe

    try:
        path = run_recipe(loaded, log=typer.echo, overwrite=overwrite)
    except KeyboardInterrupt:
        from climgen.training.state import interruption_note

        if loaded.baseline is not None:  # a baseline trains in one go, saving no state on the way
            raise interrupted("interrupted: a baseline keeps no state to resume; a rerun starts from the beginning") from None
        settings = loaded.pretrain
        output = loaded.resolve(loaded.output)
        note = interruption_note(output, settings.steps, settings.checkpoint_every, loaded.adversarial.steps)
        raise interrupted(note) from None
    typer.echo(f"wrote {path} and {path.with_suffix('.json')}")

"""Size against quality and speed: the default recipe trained at several sizes on one budget.

Each size (channels x residual blocks) is trained with ``recipes/train-default.yaml`` for the
same number of steps (``--steps``; the shipped model trains longer), then judged on every
held-out real field (:func:`climgen.training.corpus.held_out_fields`) at x4, uniform depth
(RMSE over bicubic's: the median over the ETOPO5 tiles, the median over the other fields, the
worst field), and timed on the speed benchmark's 1024^2 output (``inference_speed.py``'s
held-out terrain mosaic, the whole pipeline at default depth and uniform, 2 threads on CPU).
The shipped default and the multi-branch model are measured the same way for reference.
Models are written under ``--out`` and reused when there (delete them to retrain).

On a GPU, ``--minutes`` gives every size the same time instead of the same steps (its rate
measured by two short runs first), ``--batch-size`` more crops a step, and ``--no-speed``
leaves out the CPU timing (which there would not be the 2-core figure); each row is written
to ``--json`` as it is measured, so a run cut short keeps what it finished:

    python benchmarks/model_sizes.py [--shared ../shared] [--sizes 16x4 24x4 32x4 32x6] [--steps 3000]
        [--out build/sizes] [--json out.json]
    python benchmarks/model_sizes.py --device cuda --sizes 24x4 32x4 --minutes 3 --batch-size 64 \
        --threads 8 --factors 4 8 --no-speed --out gpu-sizes --json gpu-sizes/sizes.json
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np
from inference_speed import build_domain, pipeline_seconds  # beside this script
from methods_comparison import truth_and_coarse

import climgen  # noqa: F401
from climgen import metrics
from climgen.benchmark import fine_values
from climgen.evaluation import bicubic_reference
from climgen.pipeline import make_config, plan, synthesize
from climgen.refine import TileRefiner
from climgen.training.corpus import held_out_fields

ROOT = Path(__file__).resolve().parents[1]


def size_recipe(channels: int, blocks: int, steps: int, output: Path, shared: Path, settings: dict):
    """The default recipe at this size and step count, on the corpus under ``shared/data``;
    ``settings`` may set the ``device``, ``threads`` and ``batch_size``."""
    from climgen.training.recipe import load_recipe

    recipe = load_recipe(ROOT / "recipes" / "train-default.yaml")
    pretrain = {"steps": steps, "validate_every": steps, "checkpoint_every": max(250, steps // 10)}
    if settings.get("batch_size"):
        pretrain["batch_size"] = settings["batch_size"]
    return recipe.model_copy(
        update={
            "output": str(output),
            "device": settings.get("device") or recipe.device,
            "threads": settings.get("threads") or recipe.threads,
            "model": recipe.model.model_copy(update={"channels": channels, "blocks": blocks}),
            "data": recipe.data.model_copy(
                update={"corpus": recipe.data.corpus.model_copy(update={"root": str((shared / "data").resolve())})}
            ),
            "pretrain": recipe.pretrain.model_copy(update=pretrain),
        }
    )


def train_size(channels: int, blocks: int, steps: int, out: Path, shared: Path, settings: dict | None = None) -> Path:
    """Train this size for ``steps`` (reused when already trained under ``out``)."""
    from climgen.training.run import train

    path = out.resolve() / f"hierarchical-{channels}x{blocks}-{steps}.safetensors"
    if path.exists():
        return path
    return train(size_recipe(channels, blocks, steps, path.with_suffix(""), shared, settings or {}), log=lambda message: None)


def steps_in(minutes: float, channels: int, blocks: int, shared: Path, settings: dict) -> int:
    """The steps this size trains in about ``minutes`` here, in hundreds: the rate from a run of
    20 steps and one of 100 (their difference leaves out start-up, data loading and the save),
    or from the longer run alone where start-up's jitter hides the difference (fewer steps)."""
    import tempfile

    from climgen.training.run import train

    seconds = {}
    with tempfile.TemporaryDirectory() as folder:
        for count in (20, 100):
            started = time.perf_counter()
            train(size_recipe(channels, blocks, count, Path(folder) / f"probe-{count}", shared, settings), log=lambda m: None)
            seconds[count] = time.perf_counter() - started
    difference = seconds[100] - seconds[20]
    rate = 80 / difference if difference > 0.2 * seconds[100] else 100 / seconds[100]
    return max(100, int(rate * 60 * minutes) // 100 * 100)


def quality(model: str, fields, factor: int = 4) -> dict:
    """RMSE over bicubic's at ``factor``, uniform depth, on every held-out field."""
    ratios = {}
    for field in fields:
        truth, coarse = truth_and_coarse(field.truth, field.variable, factor)
        refined = fine_values(
            synthesize(coarse, factor=factor, variables=[field.variable], model=model, adaptive=False), field.variable
        )
        bicubic = bicubic_reference(truth, factor)
        scored = np.where(np.isfinite(bicubic) & np.isfinite(refined), truth, np.nan)
        ratios[field.name] = metrics.rmse(refined, scored) / metrics.rmse(bicubic, scored)
    relief = [ratio for name, ratio in ratios.items() if name.startswith("ETOPO5")]
    others = [ratio for name, ratio in ratios.items() if not name.startswith("ETOPO5")]
    return {"relief": float(np.median(relief)), "others": float(np.median(others)), "worst": max(ratios.values())}


def speed(model: str, shared: Path, repeats: int = 3) -> dict:
    """Output megapixels per second of the whole refinement of a 1024^2 output (x4)."""
    dataset, _ = build_domain(shared, 256, "orog_mod2", 4)
    job = plan(dataset, make_config(factor=4, model=model))
    field = dataset["orog"].values.astype(np.float64)
    refiner = TileRefiner(job.checkpoint.module, 4, job.prepared.layout)
    rows = {}
    for name, depth in (("default", job.depth), ("uniform", np.full_like(job.depth, 2))):
        seconds, _ = pipeline_seconds(refiner, field, depth, repeats)
        rows[name] = field.size * 16 / 1e6 / seconds
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    parser.add_argument("--sizes", nargs="+", default=["16x4", "24x4", "32x4", "32x6"])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--minutes", type=float, help="train each size for about this long instead of --steps")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], help="where to train (default: the recipe's, auto)")
    parser.add_argument("--threads", type=int, help="CPU threads of training (default: the recipe's, 2)")
    parser.add_argument("--batch-size", type=int, help="crops a step (default: the recipe's, 16)")
    parser.add_argument("--factors", type=int, nargs="+", default=[4], help="refinement factors judged (x4, x8, ...)")
    parser.add_argument("--speed", action=argparse.BooleanOptionalAction, default=True, help="time each model on CPU")
    parser.add_argument("--references", action=argparse.BooleanOptionalAction, default=True, help="judge the shipped models too")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "sizes")
    parser.add_argument("--json", type=Path)
    arguments = parser.parse_args()
    warnings.simplefilter("ignore")
    fields = held_out_fields(arguments.shared / "data")
    settings = {"device": arguments.device, "threads": arguments.threads, "batch_size": arguments.batch_size}
    models = {}
    for size in arguments.sizes:
        channels, blocks = (int(part) for part in size.split("x"))
        started = time.perf_counter()
        steps = arguments.steps
        if arguments.minutes:
            steps = steps_in(arguments.minutes, channels, blocks, arguments.shared, settings)
        models[f"{size}, {steps} steps"] = str(train_size(channels, blocks, steps, arguments.out, arguments.shared, settings))
        print(f"trained {size} for {steps} steps in {time.perf_counter() - started:.0f} s", flush=True)
    if arguments.references:
        models |= {"shipped default": "default", "multi-branch (0.1.0 default)": "amsgm-multibranch"}
    columns = [f"relief x{f} (median) | other fields x{f} (median) | worst field x{f}" for f in arguments.factors]
    speed_columns = " | MPix/s default depth | MPix/s uniform" if arguments.speed else ""
    print(f"\n| model | {' | '.join(columns)}{speed_columns} |")
    print("|---" * (1 + 3 * len(arguments.factors) + 2 * arguments.speed) + "|")
    rows = []
    for name, model in models.items():
        row = {"model": name}
        for factor in arguments.factors:
            row |= {f"{key}_x{factor}": value for key, value in quality(model, fields, factor).items()}
        if arguments.speed:
            row |= {f"mpix_{key}": value for key, value in speed(model, arguments.shared).items()}
        rows.append(row)
        cells = [f"{row[f'{key}_x{f}']:.3f}" for f in arguments.factors for key in ("relief", "others", "worst")]
        if arguments.speed:
            cells += [f"{row['mpix_default']:.2f}", f"{row['mpix_uniform']:.2f}"]
        print(f"| {name} | {' | '.join(cells)} |", flush=True)
        if arguments.json:  # after every row: a run cut short keeps what it measured
            arguments.json.parent.mkdir(parents=True, exist_ok=True)
            arguments.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()

"""Size against quality and speed: the default recipe trained at several sizes on one budget.

Each size (channels x residual blocks) is trained with ``recipes/train-default.yaml`` for the
same number of steps (``--steps``; the shipped model trains longer), then judged on every
held-out real field (:func:`climgen.training.corpus.held_out_fields`) at x4, uniform depth
(RMSE over bicubic's: the median over the ETOPO5 tiles, the median over the other fields, the
worst field), and timed on the speed benchmark's 1024^2 output (``inference_speed.py``'s
held-out terrain mosaic, the whole pipeline at default depth and uniform, 2 threads on CPU).
The shipped default and the multi-branch model are measured the same way for reference.
Models are written under ``--out`` and reused when there (delete them to retrain).

    python benchmarks/model_sizes.py [--shared ../shared] [--sizes 16x4 24x4 32x4 32x6] [--steps 3000]
        [--out build/sizes] [--json out.json]
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


def train_size(channels: int, blocks: int, steps: int, out: Path, shared: Path) -> Path:
    """The default recipe at this size and step count, on the corpus under ``shared/data``
    (reused when already trained)."""
    from climgen.training.recipe import load_recipe
    from climgen.training.run import train

    path = out.resolve() / f"hierarchical-{channels}x{blocks}-{steps}.safetensors"
    if path.exists():
        return path
    recipe = load_recipe(ROOT / "recipes" / "train-default.yaml")
    recipe = recipe.model_copy(
        update={
            "output": str(path.with_suffix("")),
            "model": recipe.model.model_copy(update={"channels": channels, "blocks": blocks}),
            "data": recipe.data.model_copy(
                update={"corpus": recipe.data.corpus.model_copy(update={"root": str((shared / "data").resolve())})}
            ),
            "pretrain": recipe.pretrain.model_copy(update={"steps": steps, "validate_every": steps}),
        }
    )
    return train(recipe, log=lambda message: None)


def quality(model: str, fields) -> dict:
    """RMSE over bicubic's at x4, uniform depth, on every held-out field."""
    ratios = {}
    for field in fields:
        truth, coarse = truth_and_coarse(field.truth, field.variable, 4)
        refined = fine_values(
            synthesize(coarse, factor=4, variables=[field.variable], model=model, adaptive=False), field.variable
        )
        bicubic = bicubic_reference(truth, 4)
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
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "sizes")
    parser.add_argument("--json", type=Path)
    arguments = parser.parse_args()
    warnings.simplefilter("ignore")
    fields = held_out_fields(arguments.shared / "data")
    models = {}
    for size in arguments.sizes:
        channels, blocks = (int(part) for part in size.split("x"))
        started = time.perf_counter()
        models[f"{size}, {arguments.steps} steps"] = str(
            train_size(channels, blocks, arguments.steps, arguments.out, arguments.shared)
        )
        print(f"trained {size} in {time.perf_counter() - started:.0f} s", flush=True)
    models |= {"shipped default": "default", "multi-branch (0.1.0 default)": "amsgm-multibranch"}
    print("\n| model | relief x4 (median) | other fields x4 (median) | worst field | MPix/s default depth | MPix/s uniform |")
    print("|---|---|---|---|---|---|")
    rows = []
    for name, model in models.items():
        row = {"model": name, **quality(model, fields), **{f"mpix_{k}": v for k, v in speed(model, arguments.shared).items()}}
        rows.append(row)
        print(
            f"| {name} | {row['relief']:.3f} | {row['others']:.3f} | {row['worst']:.3f} | {row['mpix_default']:.2f} | "
            f"{row['mpix_uniform']:.2f} |",
            flush=True,
        )
    if arguments.json:
        arguments.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()

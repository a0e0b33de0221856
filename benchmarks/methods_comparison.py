"""The seed paper's comparison, measured: the adaptive multi-scale generator (its best
estimate and its samples) vs single-scale GAN vs conditional VAE vs bicubic, on every held-out
real field (:func:`climgen.training.corpus.held_out_fields`).

Each truth field is coarsened by 4 (block mean) and refined by every method with the same
seed; the rows are those of ``climgen benchmark`` (:func:`climgen.benchmark.score`): RMSE,
SSIM of the fields and of their detail beyond bicubic, Frechet distance of patch features,
top-octave spectral error, diversity and diversity ratio of ``--members`` members, CRPS,
floating-point operations per output cell and output megapixels per second of one member.
Prints, per method, the medians over fields of the scores that compare across fields (RMSE
and CRPS as ratios to bicubic's) and on how many fields it is best; ``--per-field`` adds every
field's own table and ``--json`` saves the rows.

    python benchmarks/methods_comparison.py [--shared ../shared] [--members 4] [--quick] [--per-field]
        [--srgan srgan-x4|CHECKPOINT] [--cvae cvae-x4|CHECKPOINT] [--groups relief ncl ...]

The shipped baselines come from ``climgen train recipes/train-baseline-srgan.yaml`` and
``recipes/train-baseline-cvae.yaml``. ``climgen benchmark`` runs the same comparison on your
own field, with fine-tuning.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np
import xarray as xr

import climgen  # noqa: F401
from climgen.benchmark import COLUMNS, fine_values, method_variants, score
from climgen.evaluation import bicubic_reference
from climgen.grid import coarsen_dataset, find_spatial_axes
from climgen.pipeline import synthesize
from climgen.training.corpus import held_out_fields

ROOT = Path(__file__).resolve().parents[1]
FACTOR = 4


def truth_and_coarse(truth_ds: xr.Dataset, variable: str, factor: int = FACTOR) -> tuple[np.ndarray, xr.Dataset]:
    """The truth cropped to whole coarse cells, as (fields, y, x) values, and its block-mean
    coarsening by ``factor`` (what every method refines)."""
    axes = find_spatial_axes(truth_ds)
    truth_ds = truth_ds.isel(
        {axes.y: slice(0, truth_ds.sizes[axes.y] // factor * factor), axes.x: slice(0, truth_ds.sizes[axes.x] // factor * factor)}
    )
    coarse_ds = coarsen_dataset(truth_ds[[variable]].assign_coords(truth_ds.coords), factor)
    return fine_values(truth_ds, variable), coarse_ds


def compare(truth_ds: xr.Dataset, variable: str, models: dict[str, str], member_count: int) -> list[dict]:
    truth, coarse_ds = truth_and_coarse(truth_ds, variable)
    axes = find_spatial_axes(coarse_ds)
    bicubic_reference(truth[:1], FACTOR)  # warm up (imports), so the timing is the work
    started = time.perf_counter()
    bicubic = np.stack([bicubic_reference(field, FACTOR) for field in truth])
    rows = [score("bicubic", bicubic[None], truth, bicubic, time.perf_counter() - started, 0.0)]
    for method, model in models.items():
        synthesize(coarse_ds.isel({axes.y: slice(0, 8), axes.x: slice(0, 8)}), factor=FACTOR, variables=[variable], model=model)
        for variant, adaptive, members in method_variants(method, model, member_count):
            started = time.perf_counter()
            options = {"factor": FACTOR, "variables": [variable], "seed": 0, "model": model, "adaptive": adaptive}
            result = synthesize(coarse_ds, members=members, **options)
            seconds = (time.perf_counter() - started) / members
            fields = [result.isel(realization=m) for m in range(members)] if members > 1 else [result]
            values = np.stack([fine_values(field, variable) for field in fields])
            macs = json.loads(result.attrs["climgen_provenance"])["compute"]["macs"] / members
            rows.append(score(method, values, truth, bicubic, seconds, macs, variant))
    return rows


def print_summary(rows: list[dict]) -> None:
    """One row per method: medians over fields of the scores that compare across fields (RMSE
    and CRPS over bicubic's, SSIM, detail SSIM, Frechet distance, diversity over the truth
    detail's) and on how many fields the method is best on detail SSIM and Frechet distance."""
    fields = list(dict.fromkeys(row["field"] for row in rows))
    variants = list(dict.fromkeys((row["method"], row["variant"]) for row in rows))
    by_field = {field: {(row["method"], row["variant"]): row for row in rows if row["field"] == field} for field in fields}

    def best_count(column: str, larger_is_better: bool) -> dict:
        counts = dict.fromkeys(variants, 0)
        for table in by_field.values():
            scored = {key: row[column] for key, row in table.items() if row[column] is not None and key[0] != "bicubic"}
            counts[(max if larger_is_better else min)(scored, key=scored.get)] += 1
        return counts

    ssim_best, frechet_best = best_count("detail_ssim", True), best_count("frechet_distance", False)
    print(f"\nMedians over {len(fields)} held-out fields at x{FACTOR} (RMSE and CRPS as ratios to bicubic's on each field)\n")
    print(
        "| method | variant | RMSE / bicubic | CRPS / bicubic | SSIM | detail SSIM | Frechet distance | diversity ratio "
        "| best detail SSIM (fields) | best Frechet (fields) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for key in variants:
        chosen = [table[key] for table in by_field.values() if key in table]
        bicubic = [by_field[row["field"]][("bicubic", "")] for row in chosen]

        def median(values) -> float:
            return float(np.median(values))

        cells = [
            median([row["rmse"] / ref["rmse"] for row, ref in zip(chosen, bicubic, strict=True)]),
            median([row["crps"] / ref["crps"] for row, ref in zip(chosen, bicubic, strict=True)]),
            median([row["ssim"] for row in chosen]),
            median([row["detail_ssim"] for row in chosen]),
            median([row["frechet_distance"] for row in chosen]),
            median([row["diversity_ratio"] or 0.0 for row in chosen]),
        ]
        counts = ["-", "-"] if key[0] == "bicubic" else [str(ssim_best[key]), str(frechet_best[key])]
        print(
            f"| {key[0]} | {key[1] or '-'} | " + " | ".join(f"{value:.3f}" for value in cells) + f" | {counts[0]} | {counts[1]} |"
        )


def _format(value) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    parser.add_argument("--members", type=int, default=4)
    parser.add_argument("--srgan", default="srgan-x4", help="the shipped single-scale GAN, or a checkpoint")
    parser.add_argument("--cvae", default="cvae-x4", help="the shipped conditional VAE, or a checkpoint")
    parser.add_argument("--groups", nargs="+", help="held-out groups to evaluate (relief, ncl, wind...; default: all)")
    parser.add_argument(
        "--quick", action="store_true", help="only two of the eight held-out ETOPO5 tiles (every other field still)"
    )
    parser.add_argument("--per-field", action="store_true", help="also print every field's own table")
    parser.add_argument("--json", type=Path)
    arguments = parser.parse_args()
    warnings.simplefilter("ignore")
    models = {"amsgm": "default", "gan": arguments.srgan, "vae": arguments.cvae}
    rows = []
    for field in held_out_fields(arguments.shared / "data", 2 if arguments.quick else None):
        if arguments.groups and field.group not in arguments.groups:
            continue
        field_rows = compare(field.truth, field.variable, models, arguments.members)
        for row in field_rows:
            row["field"] = field.name
        rows += field_rows
        if arguments.per_field:
            print(f"\n{field.name}, x{FACTOR}, {arguments.members} members\n")
            print("| " + " | ".join(COLUMNS) + " |")
            print("|" + "---|" * len(COLUMNS))
            for row in field_rows:
                print("| " + " | ".join(_format(row[column]) for column in COLUMNS) + " |", flush=True)
    print_summary(rows)
    if arguments.json:
        arguments.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()

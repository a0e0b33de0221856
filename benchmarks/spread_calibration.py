"""The drawn-detail scale of a sampling model, fitted leave-one-field-out on the held-out fields.

Each stage's sample head learns its own spread, and a chain of stages adds them up, so members
refined over more stages spread too much: a longer chain needs a smaller scale of the drawn
detail (``HierarchicalConfig.sample_scale``, by the number of stages). For each factor, the
members (``--members``, seed 0, default depth) of every held-out real field
(:func:`climgen.training.corpus.held_out_fields`) are scored at each scale of ``--scales``; a
field's spread / skill between two scales is interpolated (log-log). The scale for a factor is
the one whose spread / skill is closest to a calibrated ensemble's, sqrt(m / (m + 1)), in the
mean squared log over the fields. Reported:

- **leave one field out**: for each field, the scale fitted on all the others, and the field's
  spread / skill at it;
- **fitted on all fields**: what goes into the checkpoint's ``sample_scale``.

    python benchmarks/spread_calibration.py [--shared ../shared] [--factors 2 4 8] [--model default]
        [--scales 0.5 0.6 0.7 0.8 0.9 1.0] [--quick] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np
from ensemble_scores import scores  # beside this script

import climgen  # noqa: F401
from climgen.models.checkpoint import load_checkpoint
from climgen.training.corpus import held_out_fields

ROOT = Path(__file__).resolve().parents[1]
CALIBRATED_RANGE = (0.8, 1.2)


@contextmanager
def drawn_detail_scale(model: str, scale: float):
    """The loaded ``model`` with every chain's drawn detail scaled by ``scale`` (restored after)."""
    module = load_checkpoint(model).module
    kept = module.config
    module.config = replace(kept, sample_scale=(scale,) * len(kept.sample_scale))
    try:
        yield
    finally:
        module.config = kept


def ratio_at(scales: np.ndarray, ratios: np.ndarray, scale: float) -> float:
    """Spread / skill at ``scale``, interpolated in log-log between the measured scales."""
    return float(np.exp(np.interp(np.log(scale), np.log(scales), np.log(ratios))))


def fit_scale(scales: np.ndarray, ratios: np.ndarray, target: float) -> float:
    """The scale whose spread / skill is closest to ``target`` in mean squared log over the
    fields (``ratios``: fields x scales), searched on a fine grid within the measured scales."""
    candidates = np.exp(np.linspace(np.log(scales[0]), np.log(scales[-1]), 201))
    misfit = [np.mean([np.log(ratio_at(scales, row, c) / target) ** 2 for row in ratios]) for c in candidates]
    return float(candidates[int(np.argmin(misfit))])


def calibrate(measured: dict[float, list[dict]], members: int) -> dict:
    """Per field: the leave-one-field-out scale and spread / skill; and the all-field scale."""
    scales = np.array(sorted(measured))
    names = [row["field"] for row in measured[scales[0]]]
    ratios = np.array([[row["spread_skill"] for row in measured[scale]] for scale in scales]).T
    target = np.sqrt(members / (members + 1))
    fields = []
    for index, name in enumerate(names):
        others = np.delete(ratios, index, axis=0)
        scale = fit_scale(scales, others, target)
        fields.append(
            {
                "field": name,
                "unscaled": ratio_at(scales, ratios[index], 1.0) if scales[-1] >= 1.0 else float("nan"),
                "scale": scale,
                "held_out": ratio_at(scales, ratios[index], scale),
            }
        )
    return {"target": float(target), "scale": fit_scale(scales, ratios, target), "fields": fields}


def print_tables(results: dict[int, dict]) -> None:
    low, high = CALIBRATED_RANGE
    print(
        "\n| factor | stages | scale fitted on all fields | leave-one-out scales | spread / skill unscaled (in 0.8-1.2) | left out at its scale (in 0.8-1.2) |"
    )
    print("|---|---|---|---|---|---|")
    for factor, result in results.items():
        rows = result["fields"]
        unscaled = [row["unscaled"] for row in rows]
        held = [row["held_out"] for row in rows]
        scales = [row["scale"] for row in rows]
        print(
            f"| x{factor} | {int(np.log2(factor))} | {result['scale']:.3f} | {min(scales):.3f} .. {max(scales):.3f} | "
            f"{min(unscaled):.2f} .. {max(unscaled):.2f} ({sum(low <= r <= high for r in unscaled)}/{len(rows)}) | "
            f"{min(held):.2f} .. {max(held):.2f} ({sum(low <= r <= high for r in held)}/{len(rows)}) |"
        )
    for factor, result in results.items():
        print(f"\n| held-out field, x{factor} | spread / skill unscaled | scale fitted without it | spread / skill at it |")
        print("|---|---|---|---|")
        for row in result["fields"]:
            print(f"| {row['field']} | {row['unscaled']:.2f} | {row['scale']:.3f} | {row['held_out']:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    parser.add_argument("--factors", type=int, nargs="+", default=[2, 4, 8])
    parser.add_argument("--scales", type=float, nargs="+", default=[0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
    parser.add_argument("--members", type=int, default=8)
    parser.add_argument("--model", default="default")
    parser.add_argument("--quick", action="store_true", help="only two of the eight held-out ETOPO5 tiles")
    parser.add_argument("--json", type=Path)
    arguments = parser.parse_args()
    warnings.simplefilter("ignore")
    started = time.perf_counter()
    fields = held_out_fields(arguments.shared / "data", 2 if arguments.quick else None)
    results = {}
    for factor in arguments.factors:
        measured = {}
        for scale in sorted(arguments.scales):
            with drawn_detail_scale(arguments.model, scale):
                measured[scale] = [scores(field, factor, arguments.model, arguments.members) for field in fields]
        results[factor] = calibrate(measured, arguments.members)
    print_tables(results)
    print(f"\n{time.perf_counter() - started:.0f} s in all")
    if arguments.json:
        arguments.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()

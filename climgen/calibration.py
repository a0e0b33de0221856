"""Depth thresholds calibrated from measured refinement changes (a quality target).

On a sample of tiles spread over the range of complexity scores, each tile is refined at every
depth; ``change_k = 1 - SSIM(depth k, depth k + 1)`` on the tile's core says how much stage
k + 1 still alters it. For a quality target q, a tile needs stage k + 1 when its change exceeds
1 - q. The threshold for depth k + 1 is the lowest score among sampled tiles that needed it
(thresholds are made non-decreasing), and every tile's depth is the number of thresholds its
score reaches. The measurements are kept for the output's provenance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from climgen.complexity import ComplexityScores
from climgen.metrics import ssim
from climgen.refine import TileRefiner, fill_nearest
from climgen.tiling import Tile


@dataclass(frozen=True)
class Calibration:
    """Thresholds on the complexity score and the measurements behind them."""

    quality: float
    thresholds: list[float]
    samples: list[dict]

    def depth(self, scores: ComplexityScores) -> np.ndarray:
        depth = sum((scores.score >= threshold).astype(np.int8) for threshold in self.thresholds)
        return np.where(scores.constant, 0, depth).astype(np.int8)

    def as_dict(self) -> dict:
        return {"quality": self.quality, "thresholds": self.thresholds, "samples": self.samples}


def sample_tiles(scores: ComplexityScores, tiles: list[Tile], count: int) -> list[Tile]:
    """Up to ``count`` non-constant tiles evenly spread over the sorted scores."""
    candidates = [tile for tile in tiles if not scores.constant[tile.row, tile.col]]
    candidates.sort(key=lambda tile: scores.score[tile.row, tile.col])
    if len(candidates) <= count:
        return candidates
    picks = np.unique(np.linspace(0, len(candidates) - 1, count).round().astype(int))
    return [candidates[i] for i in picks]


def calibrate(
    refiner: TileRefiner,
    field: np.ndarray,
    scores: ComplexityScores,
    quality: float,
    covariates=None,
    seed_key: tuple = (0,),
    count: int = 16,
) -> Calibration:
    """Measure per-stage changes on sampled tiles of one coarse 2-D field and set thresholds."""
    factor, full = refiner.factor, refiner.full_depth
    tiles = sample_tiles(scores, list(refiner.layout), count)
    field = np.asarray(field, dtype=np.float64)
    shared = refiner.region_inputs(covariates)
    outputs = {
        depth: [
            refiner.run_batch([tile.padded], fill_nearest(field[tile.padded])[None], [seed_key], depth, shared)[0]
            for tile in tiles
        ]
        for depth in range(full + 1)
    }
    samples = []
    for index, tile in enumerate(tiles):
        y0 = (tile.core[0].start - tile.padded[0].start) * factor
        x0 = (tile.core[1].start - tile.padded[1].start) * factor
        height = (tile.core[0].stop - tile.core[0].start) * factor
        width = (tile.core[1].stop - tile.core[1].start) * factor
        cores = [outputs[depth][index][y0 : y0 + height, x0 : x0 + width] for depth in range(full + 1)]
        changes = [float(1 - ssim(cores[k + 1], cores[k])) for k in range(full)]
        samples.append({"row": tile.row, "col": tile.col, "score": float(scores.score[tile.row, tile.col]), "change": changes})
    tolerance = 1 - quality
    thresholds = []
    for stage in range(full):
        needing = [s["score"] for s in samples if np.isfinite(s["change"][stage]) and s["change"][stage] > tolerance]
        thresholds.append(min(needing) if needing else float("inf"))
    thresholds = list(np.maximum.accumulate(thresholds))
    return Calibration(quality, [float(t) for t in thresholds], samples)

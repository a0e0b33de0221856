"""Tiled, adaptive refinement of numpy arrays with a generator (no xarray here).

For each 2-D field: missing cells are filled from their nearest valid neighbour for the model's
sake; tiles are refined to their own depth in batches (the remaining factor by bicubic
interpolation); the tiles are blended; a final projection makes every factor x factor block
average exactly to the coarse value; missing coarse cells are missing again on the fine grid.
Noise comes in fixed blocks on each stage's global grid, seeded per (seed, variable, field,
member, stage, block), so results do not depend on the tiling or batching and memory follows
the tile, not the domain.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict

import numpy as np
from scipy import ndimage

from climgen._torch import import_torch
from climgen.tiling import Tile, TileLayout, blend_weights, fine_slices


def stream_seed(*parts: object) -> int:
    """A 63-bit seed derived from any parts (seed, variable, index, member, stage)."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


NOISE_BLOCK = 64  # fine cells per side of one independently seeded noise block


def noise_window(keys: tuple, stage: int, rows: slice, cols: slice) -> np.ndarray:
    """Standard normal noise for a window of a stage's grid, the same whatever the tiling.

    The stage grid is cut into NOISE_BLOCK-sized blocks, each drawn from its own generator
    seeded by (keys, stage, block row, block column); a window assembles the blocks it touches,
    so memory follows the window, not the domain.
    """
    import torch

    out = np.empty((rows.stop - rows.start, cols.stop - cols.start), dtype=np.float32)
    for block_row in range(rows.start // NOISE_BLOCK, (rows.stop - 1) // NOISE_BLOCK + 1):
        for block_col in range(cols.start // NOISE_BLOCK, (cols.stop - 1) // NOISE_BLOCK + 1):
            generator = torch.Generator().manual_seed(stream_seed(*keys, stage, block_row, block_col))
            block = torch.randn((NOISE_BLOCK, NOISE_BLOCK), generator=generator).numpy()
            y0, x0 = block_row * NOISE_BLOCK, block_col * NOISE_BLOCK
            ys = slice(max(rows.start, y0), min(rows.stop, y0 + NOISE_BLOCK))
            xs = slice(max(cols.start, x0), min(cols.stop, x0 + NOISE_BLOCK))
            out[ys.start - rows.start : ys.stop - rows.start, xs.start - cols.start : xs.stop - cols.start] = block[
                ys.start - y0 : ys.stop - y0, xs.start - x0 : xs.stop - x0
            ]
    return out


def fill_nearest(field: np.ndarray) -> np.ndarray:
    """Replace non-finite cells by the nearest finite value (all-missing stays as is)."""
    missing = ~np.isfinite(field)
    if not missing.any() or missing.all():
        return field
    _, (iy, ix) = ndimage.distance_transform_edt(missing, return_indices=True)
    return field[iy, ix]


def project_blocks(fine: np.ndarray, coarse: np.ndarray, factor: int) -> np.ndarray:
    """Shift each factor x factor block of ``fine`` so its mean equals ``coarse`` (float64)."""
    ny, nx = coarse.shape
    blocks = fine.reshape(ny, factor, nx, factor)
    error = blocks.mean(axis=(1, 3)) - coarse
    return (blocks - error[:, None, :, None]).reshape(ny * factor, nx * factor)


class TileRefiner:
    """Refines (N, ny, nx) coarse arrays tile by tile at per-tile depths.

    ``model`` follows the generator interface (``model(coarse, covariates, mask, stages,
    noise)`` returning one tensor per stage); ``covariates`` are (K, NY, NX) on the fine grid.
    """

    def __init__(
        self, model, factor: int, layout: TileLayout, batch_size: int = 64, device: str | None = None, fields_per_pass: int = 16
    ):
        self.torch = import_torch()
        self.model = model
        self.factor = factor
        self.full_depth = factor.bit_length() - 1
        self.layout = layout
        self.batch_size = batch_size
        self.fields_per_pass = fields_per_pass
        self.device = self.torch.device(device or "cpu")

    def refine(self, coarse: np.ndarray, depth: np.ndarray, covariates: np.ndarray | None, seed_keys: list[tuple]) -> np.ndarray:
        """Refine each field ``coarse[n]`` with noise keyed by ``seed_keys[n]``; returns float32.

        Tiles of the same depth and shape are batched across fields (time steps, levels).
        """
        factor = self.factor
        count, ny, nx = coarse.shape
        fine = np.full((count, ny * factor, nx * factor), np.nan, dtype=np.float32)
        groups: dict[tuple, list[Tile]] = defaultdict(list)
        for tile in self.layout:
            shape = tuple(part.stop - part.start for part in tile.padded)
            groups[(int(depth[tile.row, tile.col]), shape)].append(tile)
        cov_tensor, cov_mask = self._covariates(covariates)
        # fine float64 accumulators per field in a pass: keep them under about 1 GiB
        per_pass = max(1, min(self.fields_per_pass, (1 << 30) // (8 * ny * nx * factor * factor)))
        for first in range(0, count, per_pass):
            indices = [i for i in range(first, min(count, first + per_pass)) if np.isfinite(coarse[i]).any()]
            filled = {i: fill_nearest(coarse[i].astype(np.float64)) for i in indices}
            noise_keys = {i: seed_keys[i] for i in indices}
            accumulated = {i: np.zeros((ny * factor, nx * factor)) for i in indices}
            weights = np.zeros((ny * factor, nx * factor))
            for (tile_depth, _), tiles in groups.items():
                work = [(i, tile) for tile in tiles for i in indices]
                for start in range(0, len(work), self.batch_size):
                    batch = work[start : start + self.batch_size]
                    outputs = self._run_batch(batch, filled, noise_keys, tile_depth, cov_tensor, cov_mask)
                    for (i, tile), output in zip(batch, outputs, strict=True):
                        self._blend(tile, output, accumulated[i], weights if i == indices[0] else None)
            for i in indices:
                projected = project_blocks(accumulated[i] / weights, filled[i], factor)
                missing = ~np.isfinite(coarse[i])
                projected[np.repeat(np.repeat(missing, factor, 0), factor, 1)] = np.nan
                fine[i] = projected
        return fine

    def _covariates(self, covariates: np.ndarray | None):
        if covariates is None:
            return None, None
        torch = self.torch
        values = torch.as_tensor(np.ascontiguousarray(covariates), dtype=torch.float32)
        mask = torch.isfinite(values).to(torch.float32)
        return torch.nan_to_num(values), mask

    def _run_batch(
        self, batch: list[tuple[int, Tile]], fields: dict, noise_keys: dict, depth: int, cov_tensor, cov_mask
    ) -> list[np.ndarray]:
        torch = self.torch
        factor = self.factor
        coarse = torch.as_tensor(np.stack([fields[i][tile.padded] for i, tile in batch]), dtype=torch.float32)[:, None]
        with torch.inference_mode():
            if depth == 0:
                refined = coarse
            else:
                level = 2**depth
                stage_noise = [
                    torch.from_numpy(
                        np.stack(
                            [noise_window(noise_keys[i], s + 1, *fine_slices(tile.padded, 2 ** (s + 1))) for i, tile in batch]
                        )
                    )[:, None]
                    for s in range(depth)
                ]
                covariates = mask = None
                if cov_tensor is not None:
                    # covariates on the depth's grid: block means of the final-grid values
                    windows = [fine_slices(tile.padded, factor) for _, tile in batch]
                    values = torch.stack([cov_tensor[(slice(None), *w)] for w in windows])
                    valid = torch.stack([cov_mask[(slice(None), *w)] for w in windows])
                    down = factor // level
                    if down > 1:
                        pooled = torch.nn.functional.avg_pool2d(values * valid, down)
                        valid = torch.nn.functional.avg_pool2d(valid, down)
                        values = torch.where(valid > 0, pooled / valid.clamp_min(1e-12), torch.zeros_like(pooled))
                    covariates, mask = values.to(self.device), valid.to(self.device)
                refined = self.model(
                    coarse.to(self.device), covariates, mask, stages=depth, noise=[n.to(self.device) for n in stage_noise]
                )[-1].cpu()
            remaining = factor // 2**depth
            if remaining > 1:
                from climgen.models.generator import bicubic_upsample, project_to_coarse

                refined = project_to_coarse(bicubic_upsample(refined, remaining), refined)
        return [output[0].double().numpy() for output in refined]

    def _blend(self, tile: Tile, output: np.ndarray, accumulated: np.ndarray, weights: np.ndarray | None) -> None:
        factor = self.factor
        offset_y = (tile.blend[0].start - tile.padded[0].start) * factor
        offset_x = (tile.blend[1].start - tile.padded[1].start) * factor
        window = blend_weights(tile, self.layout, factor)
        height, width = window.shape
        part = output[offset_y : offset_y + height, offset_x : offset_x + width]
        target = fine_slices(tile.blend, factor)
        accumulated[target] += window * part
        if weights is not None:  # the same for every field: accumulate once
            weights[target] += window

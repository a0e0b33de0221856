"""Tiled, adaptive refinement of numpy arrays with a generator (no xarray here).

For each 2-D field: tiles are refined to their own depth in model windows they share with the
tiles of their group (:meth:`climgen.tiling.TileLayout.group_calls`; missing cells filled from
the nearest valid neighbour for the model's sake, the remaining factor by bicubic
interpolation); the tiles are blended in a fixed order; a final projection
makes every factor x factor block average exactly to the coarse value; missing coarse cells are
missing again on the fine grid. Noise comes in fixed blocks on each stage's global grid, seeded
per (seed, variable, field, member, stage, block). A region of the output therefore depends
only on the coarse cells around it: refining the domain whole or region by region (dask tasks)
gives the same numbers, and memory follows the region, not the domain.
"""

from __future__ import annotations

import copy
import functools
from collections import defaultdict

import numpy as np
from scipy import ndimage

from climgen._torch import import_torch, model_on_device, resolve_device, resolve_precision  # noqa: F401  (re-exported)
from climgen.conservation import Bounds, Weights, project_blocks
from climgen.model_calls import ModelCalls, RegionInputs, learned_batch_size, local_window  # noqa: F401  (RegionInputs re-exported)
from climgen.tiling import Tile, TileLayout, blend_weights, fine_slices, window_key


def fill_nearest(field: np.ndarray) -> np.ndarray:
    """Replace non-finite cells by the nearest finite value (all-missing stays as is)."""
    missing = ~np.isfinite(field)
    if not missing.any() or missing.all():
        return field
    _, (iy, ix) = ndimage.distance_transform_edt(missing, return_indices=True)
    return field[iy, ix]


class TileRefiner(ModelCalls):
    """Refines (N, ny, nx) coarse arrays tile by tile at per-tile depths.

    ``model`` follows the generator interface (``model(coarse, covariates, mask, stages,
    noise)`` returning one tensor per stage). Tiles are refined through the model calls of
    their merge group, whose windows depend on the depth map only (missing cells filled from
    the nearest valid cell of the window), with noise keyed on the global grid, and blended in
    tile order; so any region of the output is the same whether the domain is refined whole or
    in pieces (by dask tasks, in any order, on any worker). A call that starts past stage 1
    runs the model for fewer stages on a finer field, so the model must apply one operator at
    every scale (the generator's stages share weights; single-scale baselines, which jump the
    whole factor, only run at uniform full depth, where every group is a single call).

    Model calls of the same stages and shape go through the model ``batch_size`` at a time
    (groups and fields mixed). On CPU the default is 1: results then do not depend on how tiles are
    grouped, and one window per call is also the fastest there. On a GPU the default is 128
    windows per call. ``precision="auto"`` runs the model's convolutions in bf16 where the
    device computes it natively (GPUs; CPUs with AVX512-BF16 or AMX), else in float32
    (:func:`climgen._torch.resolve_precision`); normalisation stays in float32. Tensors are
    channels-last; ``compile=True`` adds ``torch.compile``.
    """

    def __init__(
        self,
        model,
        factor: int,
        layout: TileLayout,
        batch_size: int | None = None,
        device: str | None = None,
        precision: str = "auto",
        compile: bool = False,
        cell_weights: Weights = None,
        residual_gain: float = 1.0,
        sample: bool = False,
        flip: tuple[bool, bool] = (False, False),
        polar_caps: tuple[int, ...] = (),
    ):
        self.torch = import_torch()
        # coarse rows centred on a pole (global row numbers): each such cell is a polar cap whose
        # one value stands for every longitude, so its fine cells take that value (see blend)
        self.polar_caps = tuple(int(row) for row in polar_caps)
        # grid axes stored descending, turned round for the model and back: the model is not
        # exactly mirror-symmetric, and a field's refinement should not depend on its storage
        self.flip = (bool(flip[0]), bool(flip[1]))
        self.factor = factor
        self.cell_weights = cell_weights  # fine cells' (row, column) area factors: area-weighted block means
        self.residual_gain = float(residual_gain)  # share of the model's learned detail kept (climgen.depth.skill)
        # a model that gives its best estimate without noise gets noise only to draw members
        self.sample = sample or not getattr(model, "best_estimate_without_noise", False)
        self.full_depth = factor.bit_length() - 1
        self.layout = layout
        self.device = self.torch.device(device or "cpu")
        on_gpu = self.device.type == "cuda"
        # on a GPU: 128 windows a call, or fewer where this process's runs ran out of memory
        self.batch_size = batch_size or (learned_batch_size(str(self.device), 128) if on_gpu else 1)
        self.precision = resolve_precision(precision, str(self.device))
        self.model = model_on_device(model, str(self.device))
        if on_gpu and self.precision == "float32":
            # float32 means float32: cuDNN would otherwise run float32 convolutions in TF32
            # (a 10-bit mantissa). Set for the process (other threads may be refining); bf16
            # convolutions are not affected, and training turns it back on for itself.
            self.torch.backends.cudnn.allow_tf32 = False
        self.compiled = compile and model is not None
        self._forward = self.torch.compile(self.model, dynamic=False) if self.compiled else self.model

    def hardware(self) -> dict:
        """Where and in what precision the model runs (for the provenance)."""
        return {"device": self.device.type, "precision_used": self.precision}

    def with_gain(self, residual_gain: float) -> TileRefiner:
        """This refiner (same model, device and geometry) keeping ``residual_gain`` of the
        model's learned detail: one variable's share, from :func:`climgen.depth.skill.self_test`."""
        refiner = copy.copy(self)
        refiner.residual_gain = float(residual_gain)
        return refiner

    def tiles_for(self, region: tuple[slice, slice], owned: bool = False) -> list[Tile]:
        """The tiles whose blend windows reach into ``region`` (coarse cells), in layout order;
        with ``owned``, those whose core lies in it."""
        return self.layout.tiles_reaching(region, 0 if owned else self.layout.halo // 2)

    def context_for(self, region: tuple[slice, slice], tiles: list[Tile] | None = None) -> tuple[slice, slice]:
        """The coarse window a region's tiles (or the given ones) may read: the padded windows
        of their merge groups together (a tile's model window lies inside its group's)."""
        tiles = self.tiles_for(region) if tiles is None else tiles
        groups = [self.layout.padded_window(*self.layout.group_ranges(t)) for t in tiles]
        return tuple(slice(min(g[a].start for g in groups), max(g[a].stop for g in groups)) for a in (0, 1))

    def refine(
        self,
        coarse: np.ndarray,
        depth: np.ndarray,
        covariates: np.ndarray | None,
        seed_keys: list[tuple],
        region: tuple[slice, slice] | None = None,
        origin: tuple[int, int] = (0, 0),
        bounds: Bounds | None = None,
    ) -> np.ndarray:
        """Refine each field ``coarse[n]`` with noise keyed by ``seed_keys[n]``; returns float32.

        ``coarse`` (N, H, W) and ``covariates`` (K, H*f, W*f) cover the domain from coarse cell
        ``origin``; the output covers ``region`` (global coarse slices, default all of
        ``coarse``), which needs ``coarse`` to include :meth:`context_for` of it. ``bounds``:
        the variable's physical (lower, upper) limits, see :meth:`blend`.
        """
        count, height, width = coarse.shape
        if region is None:
            region = (slice(origin[0], origin[0] + height), slice(origin[1], origin[1] + width))
        outputs = self.refine_tiles(coarse, depth, covariates, seed_keys, self.tiles_for(region), origin)
        target = coarse[(slice(None), *local_window(region, origin))]
        return self.blend(outputs, region, target, bounds)

    def refine_tiles(
        self,
        coarse: np.ndarray,
        depth: np.ndarray,
        covariates: np.ndarray | None,
        seed_keys: list[tuple],
        tiles: list[Tile],
        origin: tuple[int, int] = (0, 0),
    ) -> dict[tuple[int, int], np.ndarray]:
        """Each tile's refined fields over its blend window, (N, h*f, w*f) float32 (the model's
        precision; blending is in float64), by (row, col).

        ``coarse`` (N, H, W) from coarse cell ``origin`` must hold the tiles' group windows
        (:meth:`context_for`). Tiles run through the model calls of their merge group
        (:meth:`climgen.tiling.TileLayout.group_calls`): calls that start at the same stage
        go in batches of one shape, earlier stages first; deeper calls start from a crop of
        their parent's output.
        """
        torch = self.torch
        count, height, width = coarse.shape
        depth = np.asarray(depth)
        chains, groups = {}, {}
        for tile in tiles:
            group = self.layout.group_ranges(tile)
            if (group[0].start, group[1].start) not in groups:
                groups[(group[0].start, group[1].start)] = self.layout.group_calls(*group, depth)
            chains[(tile.row, tile.col)] = groups[(group[0].start, group[1].start)][(tile.row, tile.col)]
        calls = {call for chain in chains.values() for call in chain}
        windows = [call.window for call in calls if call.first == 1] + [t.padded for t in tiles if depth[t.row, t.col] == 0]
        for window in windows:
            if any(p.start < o or p.stop > o + n for p, o, n in zip(window, origin, (height, width), strict=True)):
                raise ValueError(f"coarse window from {origin} of shape {(height, width)} does not hold window {window}")
        shared = self.region_inputs(covariates, origin)
        with torch.inference_mode():
            stage_outputs = self._run_calls(coarse, calls, seed_keys, origin, shared)
            finals, blended = {}, {}
            for tile in tiles:
                tile_depth = int(depth[tile.row, tile.col])
                call = chains[(tile.row, tile.col)][-1] if tile_depth else None
                window = call.window if call else tile.padded
                key = (call, tile_depth) if call else window_key(window)  # depth 0: the tile's own window
                if key not in finals:
                    finals[key] = self._final_fields(coarse, call, tile_depth, window, stage_outputs, origin)
                outputs = finals[key]
                blend = tuple(
                    slice((b.start - w.start) * self.factor, (b.stop - w.start) * self.factor)
                    for b, w in zip(tile.blend, window, strict=True)
                )
                blended[(tile.row, tile.col)] = outputs[(slice(None), *blend)]
        return blended

    def _run_calls(self, coarse: np.ndarray, calls: set, seed_keys: list[tuple], origin, shared: RegionInputs) -> dict:
        """Run model ``calls`` on every field with data, earlier first stages first; returns
        each (call, field index)'s outputs, one tensor (1, h, w) per stage, on the device."""
        stage_outputs: dict = {}
        for first in sorted({call.first for call in calls}):
            pending = defaultdict(list)
            for call in sorted((c for c in calls if c.first == first), key=lambda c: (c.box, c.last)):
                for index in range(coarse.shape[0]):
                    if first == 1:
                        inputs = self._filled_window(coarse, index, call.window, origin)
                        if inputs is None:  # no data there
                            continue
                    else:
                        above = stage_outputs.get((call.parent, index))
                        if above is None:  # no data there
                            continue
                        scale = 2 ** (first - 1)
                        top = (call.box[0] - call.parent.box[0]) * scale
                        left = (call.box[2] - call.parent.box[2]) * scale
                        rows, cols = (call.box[1] - call.box[0]) * scale, (call.box[3] - call.box[2]) * scale
                        inputs = above[first - 1 - call.parent.first][0, top : top + rows, left : left + cols]
                    pending[(call.last, tuple(inputs.shape))].append((call, index, inputs))
            for (last, _), items in pending.items():
                start = 0
                while start < len(items):
                    batch = items[start : start + self.batch_size]
                    try:
                        per_stage = self.run_stages(
                            [call.window for call, _, _ in batch],
                            self.torch.stack([inputs for _, _, inputs in batch]),
                            [seed_keys[index] for _, index, _ in batch],
                            last,
                            shared,
                            first,
                        )
                    except self.torch.OutOfMemoryError:
                        full = True  # handled past the except: its traceback holds the failed call's tensors
                    else:
                        full = False
                    if full:
                        self._fewer_windows(tuple(batch[0][2].shape))
                        continue  # the same windows again, fewer at a time
                    for position, (call, index, _) in enumerate(batch):
                        stage_outputs[(call, index)] = [stage[position] for stage in per_stage]
                    start += len(batch)
        return stage_outputs

    def _final_fields(self, coarse, call, depth: int, window, stage_outputs: dict, origin) -> np.ndarray:
        """The fields (N, h*f, w*f) over ``window`` after stage ``depth`` of ``call`` (None:
        depth 0, the coarse window itself), the remaining factor bicubic and projected."""
        count = coarse.shape[0]
        rows, cols = (w.stop - w.start for w in window)
        out = np.zeros((count, rows * self.factor, cols * self.factor), dtype=np.float32)
        remaining = self.factor // 2**depth
        for index in range(count):
            if call is None:
                field = self._filled_window(coarse, index, window, origin)
                if field is None:
                    continue
                field = field[None].to(self.device)
            elif (call, index) in stage_outputs:
                # a single-scale baseline returns one output for its whole jump (the last stage)
                outputs = stage_outputs[(call, index)]
                field = outputs[-1] if depth == call.last else outputs[depth - call.first]
            else:
                continue
            out[index] = self._upsample_rest(field[None], remaining)[0, 0].cpu().numpy()
        return out

    def _filled_window(self, coarse: np.ndarray, index: int, window, origin):
        """Field ``index`` of ``coarse`` (from cell ``origin``) over global ``window``, gaps
        filled from the nearest valid cell, as a float32 tensor; None when it has no data."""
        values = coarse[(index, *local_window(window, origin))]
        if not np.isfinite(values).any():
            return None
        return self.torch.as_tensor(fill_nearest(values.astype(np.float64)), dtype=self.torch.float32)

    def _upsample_rest(self, refined, remaining: int):
        """Bicubic interpolation by the ``remaining`` factor, projected back onto ``refined``."""
        if remaining == 1:
            return refined
        from climgen.models.generator import bicubic_upsample, project_to_coarse

        return project_to_coarse(bicubic_upsample(refined, remaining), refined)

    def blend(
        self,
        outputs: dict,
        region: tuple[slice, slice],
        target: np.ndarray,
        bounds: Bounds | None = None,
    ) -> np.ndarray:
        """Blend tile outputs (from :meth:`refine_tiles`, holding every tile of
        :meth:`tiles_for` ``region``) over ``region`` in tile order, then project each
        factor x factor block onto the coarse ``target`` (N, h, w), inside ``bounds`` (lower,
        upper; see :func:`climgen.conservation.project_blocks`), by area-weighted means when the
        refiner has ``cell_weights``; missing cells stay missing."""
        factor = self.factor
        out_shape = ((region[0].stop - region[0].start) * factor, (region[1].stop - region[1].start) * factor)
        accumulated = np.zeros((target.shape[0], *out_shape))
        weights = np.zeros(out_shape)
        for tile in self.tiles_for(region):
            self._blend(tile, outputs[(tile.row, tile.col)], region, accumulated, weights)
        accumulated /= weights  # in place: a domain-sized float64 array is costly to allocate
        fine = np.empty(accumulated.shape, dtype=np.float32)
        for i in range(target.shape[0]):
            values = np.where(np.isfinite(target[i]), target[i], np.nan)
            fine[i] = project_blocks(accumulated[i], values, factor, True, bounds, self.region_weights(region))
        # a cell centred on a pole is a cap round it: its neighbours along the row are the same
        # place, so the refinement (which sees the row as a line) must not make them differ.
        # Its fine cells take its value: block means exact, cells inside the bounds
        for row in self.polar_caps:
            if region[0].start <= row < region[0].stop:
                local = row - region[0].start
                values = np.where(np.isfinite(target[:, local]), target[:, local], np.nan)
                fine[:, local * factor : (local + 1) * factor] = np.repeat(values, factor, axis=-1)[:, None, :]
        return fine

    def region_weights(self, region: tuple[slice, slice]) -> Weights:
        """The cell weights of ``region`` (coarse cells) on the fine grid, or None."""
        if self.cell_weights is None:
            return None
        rows, cols = fine_slices(region, self.factor)
        return self.cell_weights[0][rows], self.cell_weights[1][cols]

    def run_batch(
        self,
        windows: list[tuple[slice, slice]],
        inputs: np.ndarray,
        keys: list[tuple],
        depth: int,
        shared: RegionInputs | None = None,
    ) -> np.ndarray:
        """Refine ``inputs`` (B, h, w), the values of coarse ``windows`` (global slices, one per
        input, same shape), to ``depth`` in one model call and the rest of the factor by bicubic
        interpolation (float32), with the region's ``shared`` inputs (:meth:`region_inputs`;
        default: no covariates, origin 0); noise is keyed on the global grid by each window's key."""
        torch = self.torch
        with torch.inference_mode():
            if depth == 0:
                refined = torch.as_tensor(inputs, dtype=torch.float32)[:, None].to(self.device)
            else:
                refined = self.run_stages(windows, inputs, keys, depth, shared)[-1]
            return self._upsample_rest(refined, self.factor // 2**depth)[:, 0].cpu().numpy()

    def _blend(self, tile: Tile, outputs: np.ndarray, region, accumulated: np.ndarray, weights: np.ndarray) -> None:
        """Add a tile's weighted outputs (N, h*f, w*f over its blend window) inside ``region``."""
        factor = self.factor
        window = blend_weights(tile, self.layout, factor)
        part = tuple(slice(max(b.start, r.start), min(b.stop, r.stop)) for b, r in zip(tile.blend, region, strict=True))
        in_window = tuple(
            slice((p.start - b.start) * factor, (p.stop - b.start) * factor) for p, b in zip(part, tile.blend, strict=True)
        )
        in_region = tuple(
            slice((p.start - r.start) * factor, (p.stop - r.start) * factor) for p, r in zip(part, region, strict=True)
        )
        ramp_part = window[in_window]
        accumulated[(slice(None), *in_region)] += ramp_part * outputs[(slice(None), *in_window)]
        weights[in_region] += ramp_part


def refine_domain(
    refiner: TileRefiner,
    coarse: np.ndarray,
    depth: np.ndarray,
    covariates: np.ndarray | None,
    seed_keys: list[tuple],
    memory_bytes: int = 1 << 30,
    bounds: Bounds | None = None,
) -> np.ndarray:
    """Refine whole (N, ny, nx) fields in memory, then blend; fields go in passes that keep
    the tile outputs under ``memory_bytes``; ``bounds`` are the variable's physical limits
    (see :meth:`TileRefiner.blend`).

    On CPU, merge groups of tiles (whose model calls feed each other, see
    :meth:`climgen.tiling.TileLayout.group_calls`) run as parallel dask tasks on one torch
    thread each (the streaming path does the same, so both give the same bits); when a domain
    has fewer groups than the cores can take, each group's fields are split over several
    tasks too (fields are refined independently, so the bits do not change). On a GPU all
    tiles of a pass go to the device in large batches from one thread.
    """
    import dask
    from dask.system import CPU_COUNT

    from climgen._torch import torch_threads
    from climgen.allocator import retain_freed_memory

    count, ny, nx = coarse.shape
    factor = refiner.factor
    layout = refiner.layout
    # one task per merge group (its calls feed each other), the most work first, so that the
    # threads finish together
    groups = []
    for row0 in range(0, layout.grid_shape[0], layout.merge):
        for col0 in range(0, layout.grid_shape[1], layout.merge):
            rows = range(row0, min(layout.grid_shape[0], row0 + layout.merge))
            cols = range(col0, min(layout.grid_shape[1], col0 + layout.merge))
            work = sum(call.work for call in {c for chain in layout.group_calls(rows, cols, depth).values() for c in chain})
            groups.append((work, [layout.tile_at(r, c) for r in rows for c in cols]))
    groups.sort(key=lambda group: -group[0])
    output_cells = sum((t.blend[0].stop - t.blend[0].start) * (t.blend[1].stop - t.blend[1].start) for t in layout)
    # per field: tile outputs and blending in float64, plus the noise blocks drawn for the pass
    # (float32 on every stage's grid: at most 4/3 of the fine cells)
    per_field = factor * factor * (8 * (output_cells + ny * nx) + 6 * ny * nx)
    per_pass = max(1, min(count, memory_bytes // per_field))
    whole = (slice(0, ny), slice(0, nx))
    fine = np.empty((count, ny * factor, nx * factor), dtype=np.float32)
    for first in range(0, count, per_pass):
        fields = slice(first, min(count, first + per_pass))
        if refiner.device.type == "cuda":
            outputs = refiner.refine_tiles(coarse[fields], depth, covariates, seed_keys[fields], list(refiner.layout))
            fine[fields] = refiner.blend(outputs, whole, coarse[fields], bounds)
            continue
        workers = CPU_COUNT  # the cores this process may use (affinity, cgroup quota)
        # a few tasks per core keep every core busy to the end: split the fields when the
        # groups alone are fewer
        splits = min(fields.stop - fields.start, -(-4 * workers // len(groups)))
        parts = [slice(int(p[0]), int(p[-1]) + 1) for p in np.array_split(np.arange(fields.start, fields.stop), splits)]
        # the local scheduler starts independent tasks in reverse order of their names:
        # named so, the costliest start first (the order changes speed, never results).
        # Arguments bound beforehand: dask would search the tiles and arrays for collections
        tasks = [
            dask.delayed(
                functools.partial(refiner.refine_tiles, coarse[part], depth, covariates, seed_keys[part], tiles), pure=False
            )(dask_key_name=f"window-{len(groups) - rank:06d}-{len(parts) - index:06d}")
            for rank, (_, tiles) in enumerate(groups)
            for index, part in enumerate(parts)
        ]
        retain_freed_memory()  # tile-sized maps reuse freed memory: about a tenth faster
        with torch_threads(1):
            results = dask.compute(*tasks, scheduler="threads", num_workers=workers)
        for index, part in enumerate(parts):
            outputs = {key: value for rank in range(len(groups)) for key, value in results[rank * len(parts) + index].items()}
            fine[part] = refiner.blend(outputs, whole, coarse[part], bounds)
    return fine

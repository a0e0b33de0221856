"""Compute accounting: multiply-accumulates (MACs) spent by the generator.

The generator is fully convolutional, so one stage costs a fixed number of MACs per cell of
its input. That number is measured once per model by counting every convolution's MACs with
forward hooks on a small input; a model call over h x w coarse cells (one tile's padded
window, or several tiles' shared one) through stages a..b then costs
``macs_per_cell * h * w * (4**(a - 1) + ... + 4**(b - 1))``. Pooling and element-wise
operations are not counted (they are a small share of the work).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

import numpy as np

from climgen.tiling import TileLayout


def _conv_macs(module, inputs, output) -> int:
    kernel = module.kernel_size[0] * module.kernel_size[1]
    # the input channels given, not the module's (a stage's first convolution may take fewer)
    return int(output.numel() * (inputs[0].shape[1] // module.groups) * kernel)


@contextmanager
def counting_macs(model) -> Iterator[list[int]]:
    """Count the MACs of every convolution ``model`` runs inside the block (in ``counter[0]``)."""
    import torch

    counter = [0]
    hooks = [
        module.register_forward_hook(lambda m, i, o: counter.__setitem__(0, counter[0] + _conv_macs(m, i, o)))
        for module in model.modules()
        if isinstance(module, torch.nn.Conv2d)
    ]
    try:
        yield counter
    finally:
        for hook in hooks:
            hook.remove()


@lru_cache(maxsize=8)
def _macs_per_cell(model_id: int, model) -> float:
    import torch

    side = 8
    stages = _single_scale_stages(model) or 1
    device = next(model.parameters(), torch.zeros(())).device
    noise = [torch.zeros(1, 1, side * 2**s, side * 2**s, device=device) for s in range(1, stages + 1)]
    with counting_macs(model) as counter, torch.inference_mode():
        model(torch.zeros(1, 1, side, side, device=device), stages=stages, noise=noise)
    return counter[0] / (side * side)


def _single_scale_stages(model) -> int | None:
    """For a single-scale baseline, the stages its one jump stands for (None: a multi-stage model)."""
    from climgen.models.baselines import SingleScaleGenerator

    return model.config.stages if isinstance(model, SingleScaleGenerator) else None


def macs_per_cell(model) -> float:
    """MACs per input cell of one x2 stage (of the whole jump for single-scale baselines); a
    model that states its own count (its unpadded convolutions would make a small probe's
    count too high) is taken at its word, for its best estimate."""
    if hasattr(model, "stage_macs"):
        return float(model.macs_per_cell())
    return _macs_per_cell(id(model), model)


def window_cells(layout: TileLayout, depth: np.ndarray, single_scale: bool = False) -> float:
    """Coarse cells the model processes on one 2-D field at the given tile depths, each stage's
    counted at its input resolution (:attr:`climgen.tiling.ModelCall.work`; a single-scale
    model's one jump counts once): every model call of the layout
    (:meth:`climgen.tiling.TileLayout.model_calls`), each once."""
    calls = layout.model_calls(np.asarray(depth))
    return float(sum(call.cells if single_scale else call.work for call in calls))


def call_macs(model, call, sample: bool = False, covariates: bool = True) -> float:
    """MACs of one model call: by the model's own count of each stage on its window when it
    gives one (unpadded convolutions also compute a margin; ``sample``: an ensemble member,
    which also runs the sample head; ``covariates``: whether the run has any), else per cell
    processed."""
    if hasattr(model, "stage_macs"):
        height, width = call.box[1] - call.box[0], call.box[3] - call.box[2]
        scales = [2 ** (stage - 1) for stage in range(call.first, call.last + 1)]  # stage s works at 2**(s-1) x coarse
        return float(sum(model.stage_macs(height * scale, width * scale, sample, covariates) for scale in scales))
    return macs_per_cell(model) * (call.cells if _single_scale_stages(model) else call.work)


def window_macs(model, layout: TileLayout, depth: np.ndarray, sample: bool = False, covariates: bool = True) -> float:
    """MACs spent on one 2-D field (one ensemble member with ``sample``) at the given tile
    depths: every model call of the layout, each once."""
    return float(sum(call_macs(model, call, sample, covariates) for call in layout.model_calls(np.asarray(depth))))


def tile_macs(model, layout: TileLayout, depth: np.ndarray, sample: bool = False, covariates: bool = True) -> np.ndarray:
    """MACs spent on each tile (tile-grid shaped) for one 2-D field: each model call's share
    goes to the tiles it refines, in proportion to their core cells, so the tiles' sum is
    :func:`window_macs`."""
    spent = np.zeros(layout.grid_shape)
    for rows, cols in layout.groups():
        for call, keys in layout.call_users(rows, cols, np.asarray(depth)).items():
            cores = [layout.tile_at(*key).core for key in keys]
            areas = np.array([(y.stop - y.start) * (x.stop - x.start) for y, x in cores], dtype=np.float64)
            work = call_macs(model, call, sample, covariates)
            for key, share in zip(keys, areas / areas.sum(), strict=True):
                spent[key] += work * share
    return spent


def compute_report(
    model, layout: TileLayout, depth: np.ndarray, full_depth: int, fields: int, sample: bool = False, covariates: bool = True
) -> dict:
    """Total MACs spent on ``fields`` 2-D fields (ensemble members with ``sample``; a run with
    or without ``covariates``), against uniform full depth."""
    spent = window_macs(model, layout, depth, sample, covariates) * fields
    uniform = window_macs(model, layout, np.full(layout.grid_shape, full_depth), sample, covariates) * fields
    return {"macs": spent, "macs_uniform": uniform, "fraction_of_uniform": spent / uniform if uniform else 0.0}

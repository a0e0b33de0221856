"""The dask tasks of a streamed job: refine the tiles of a block, blend and write a region.

:func:`delayed_tasks` builds the graph :func:`climgen.streaming.run` executes. Everything a task
needs besides its data travels in one small :class:`TaskContext`; each worker process loads the
model once and keeps a channels-last copy per device, shared by its threads.
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import xarray as xr

from climgen._torch import import_torch
from climgen.conservation import order_stacks
from climgen.errors import ConfigError
from climgen.inputs import infinite_as_missing
from climgen.io.cf import MEMBER_DIM
from climgen.io.manifest import checksum, record_task, store_region
from climgen.tiling import TileLayout, fine_slices

if TYPE_CHECKING:
    from climgen.pipeline import Plan
    from climgen.streaming import Job

_MODEL_LOCK = threading.Lock()
_DEVICE_MODULES: dict = {}  # (model sha256, device) -> the model's channels-last copy on that device


@dataclass(frozen=True)
class Task:
    """One unit of work: a variable, a member, a block of fields and a region of tiles."""

    variable: str
    member: int
    leading: tuple[slice, ...]  # on the variable's leading dimensions (time chunk first)
    region: tuple[slice, slice]  # coarse cells

    @property
    def key(self) -> str:
        parts = [self.variable, f"m{self.member}"] + [f"{s.start}-{s.stop}" for s in (*self.leading, *self.region)]
        return "_".join(parts)


def variable_layout(ds: xr.Dataset, plan_: Plan, name: str) -> tuple[list[str], list[str]]:
    """The variable's leading dimensions, and the output's dimensions (members first)."""
    axes = plan_.prepared.axes
    leading = [dim for dim in ds[name].dims if dim not in (axes.y, axes.x)]
    members = [MEMBER_DIM] if plan_.config.members > 1 else []
    return leading, members + leading + [axes.y, axes.x]


@dataclass(frozen=True)
class TaskContext:
    """What every task needs besides its data: small, sent to each worker once."""

    store: str
    model: str
    model_sha256: str
    factor: int
    layout: TileLayout
    depth: np.ndarray
    seed: int
    members: int
    device: str = "auto"
    precision: str = "auto"
    bounds: Mapping = field(default_factory=dict)  # variable -> its physical (lower, upper)
    order: tuple = ()  # chains of variables kept in order, lowest first
    cell_weights: tuple | None = None  # fine cells' (row, column) area factors: area-weighted block means
    residual_gains: Mapping = field(default_factory=dict)  # variable -> share of the learned detail kept
    wrap_cells: int = 0  # a global grid's columns wrapped before its first: the store starts after them
    flip: tuple[bool, bool] = (False, False)  # (y, x) stored descending, turned round for the model
    field_labels: Mapping = field(default_factory=dict)  # variable -> each field's name in its noise keys
    model_config_sha256: str = ""  # its JSON's architecture and config (Checkpoint.config_sha256)
    polar_caps: tuple = ()  # coarse rows centred on a pole (Plan.polar_caps)


SPREAD_GPUS = "CLIMGEN_SPREAD_GPUS"
"""Set in the workers of the local cluster climgen starts (``--workers``): there ``cuda`` is the
GPU of the worker's number. Other clusters choose their workers' GPUs themselves (dask-cuda
gives each worker its own as ``cuda:0``)."""


def _worker_gpu(device: str) -> str:
    """On a worker of climgen's own local cluster on a machine with several GPUs, ``cuda`` is
    the GPU of the worker's number (workers are named 0, 1, ...), so each worker refines on its
    own GPU instead of all on the first."""
    import os

    torch = import_torch()
    if device != "cuda" or not os.environ.get(SPREAD_GPUS) or torch.cuda.device_count() < 2:
        return device
    try:
        from distributed import get_worker

        name = get_worker().name
    except (ImportError, ValueError):  # not in a dask worker
        return device
    number = name if isinstance(name, int) else zlib.crc32(str(name).encode())
    return f"cuda:{number % torch.cuda.device_count()}"


def _refiner(context: TaskContext):
    from climgen.models.checkpoint import load_checkpoint
    from climgen.refine import TileRefiner, model_on_device, resolve_device

    checkpoint = load_checkpoint(context.model)  # cached per process: loaded once per worker
    if (checkpoint.sha256, checkpoint.config_sha256) != (context.model_sha256, context.model_config_sha256):
        raise ConfigError(f"model {context.model!r} changed while the job ran; start it again")
    device = _worker_gpu(resolve_device(context.device))
    with _MODEL_LOCK:  # threads of one worker share one (channels-last) copy per device
        key = (checkpoint.sha256, checkpoint.config_sha256, device)
        if key not in _DEVICE_MODULES:
            _DEVICE_MODULES[key] = model_on_device(checkpoint.module, device)
        module = _DEVICE_MODULES[key]
    return TileRefiner(
        module,
        context.factor,
        context.layout,
        device=device,
        precision=context.precision,
        cell_weights=context.cell_weights,
        sample=context.members > 1,
        flip=context.flip,
        polar_caps=context.polar_caps,
    )


def refine_group(
    coarse: np.ndarray, covariates: np.ndarray | None, task: Task, context: TaskContext, origin: tuple[int, int]
) -> dict:
    """Refine the tiles whose cores lie in ``task.region`` (a dask task; its outputs feed the
    writes of this region and of its neighbours)."""
    refiner = _refiner(context).with_gain(context.residual_gains.get(task.variable, 1.0))
    fields = np.asarray(coarse, dtype=np.float64).reshape(-1, *coarse.shape[-2:])
    rest = int(np.prod(coarse.shape[1:-2])) if coarse.ndim > 3 else 1
    first = task.leading[0].start * rest if task.leading else 0
    labels = context.field_labels.get(task.variable)
    keys = [
        (context.seed, task.variable, labels(index) if labels else index, task.member)
        for index in range(first, first + fields.shape[0])
    ]
    return refiner.refine_tiles(fields, context.depth, covariates, keys, refiner.tiles_for(task.region, owned=True), origin)


def write_region(
    targets: dict[str, np.ndarray], groups: dict[str, list[dict]], task: Task, context: TaskContext, dims: list[str]
) -> str:
    """Blend the tile outputs over ``task.region``, write them to the store, record the task.
    ``targets`` and ``groups`` hold the task's variable and, when it is chained, the others
    of its chain, whose blended fields order it (:func:`climgen.conservation.order_stacks`)."""
    refiner = _refiner(context)
    coarse, fine = {}, {}
    for name, target in targets.items():
        outputs = {key: value for group in groups[name] for key, value in group.items()}
        coarse[name] = np.asarray(target, dtype=np.float64).reshape(-1, *target.shape[-2:])
        fine[name] = refiner.blend(outputs, task.region, coarse[name], context.bounds.get(name))
    chain = next((chain for chain in context.order if task.variable in chain), None)
    if chain is not None:
        limits = [context.bounds.get(name) for name in chain]
        weights = refiner.region_weights(task.region)
        order_stacks([fine[name] for name in chain], [coarse[name] for name in chain], context.factor, limits, weights)
    target = targets[task.variable]
    fine = fine[task.variable].reshape(*target.shape[:-2], *(n * context.factor for n in target.shape[-2:]))
    region = store_region(task.region, task.leading, task.member, dims, context.factor, context.wrap_cells, context.members)
    if context.members > 1:
        fine = fine[None]
    xr.Dataset({task.variable: (dims, fine)}).to_zarr(context.store, region=region, mode="r+", zarr_format=2, consolidated=False)
    record_task(Path(context.store).with_suffix(".manifest"), task.key, checksum(fine))
    return task.key


class SharedBlocks:
    """A variable's coarse values as dask blocks of one time chunk each (spatial axes whole),
    every block one shared task: the pieces the tasks take of it are cut from that task's
    result. A slice of the dask array itself, given to each task, would be optimised into the
    task's own graph and read its chunk again (up to 40 times a chunk)."""

    def __init__(self, array):
        self.array = array
        self.blocks = array.to_delayed()  # one (optimised) Delayed per block
        self.starts = np.cumsum((0, *array.chunks[0])) if array.ndim > 2 else np.zeros(1, dtype=int)

    def piece(self, leading: tuple[slice, ...], window: tuple[slice, slice]):
        """The values over ``leading`` (within one time chunk) and the coarse ``window``."""
        import operator

        import dask

        if not leading:
            return dask.delayed(operator.getitem)(self.blocks[0, 0], window)
        index = int(np.searchsorted(self.starts, leading[0].start, side="right")) - 1
        start, stop = self.starts[index], self.starts[index + 1]
        if leading[0].stop > stop:
            raise ValueError(f"steps {leading[0]} cross the time chunk {start}:{stop}")
        local = slice(leading[0].start - start, leading[0].stop - start)
        block = self.blocks[(index,) + (0,) * (self.array.ndim - 1)]
        return dask.delayed(operator.getitem)(block, (local, *leading[1:], *window))


def delayed_tasks(ds: xr.Dataset, job: Job, pending: list[Task]) -> list:
    """Two task layers: refine the tiles of each *block*, then blend and write each region from
    the blocks its tiles and their neighbours lie in. Blocks are regions rounded up to whole
    groups of tiles that share model windows (``layout.merge``), so every tile and every shared
    window is refined once, whatever ``region_tiles`` is."""
    import dask
    import dask.array as da

    plan_ = job.plan
    axes, factor, layout = plan_.prepared.axes, plan_.config.factor, plan_.prepared.layout
    step = -(-job.options.region_tiles // layout.merge) * layout.merge * layout.tile  # a block's side
    from climgen.refine import TileRefiner

    refiner = TileRefiner(None, factor, layout)  # tile geometry only
    covariates = plan_.prepared.covariates
    if covariates is not None:
        covariates = da.from_array(covariates, chunks=(covariates.shape[0], 512, 512))
    context = dask.delayed(
        TaskContext(
            str(job.store),
            model_reference(plan_),
            plan_.checkpoint.sha256,
            factor,
            layout,
            plan_.depth,
            plan_.config.seed,
            plan_.config.members,
            job.options.device,
            job.precision,  # resolved once: every worker runs in it
            plan_.prepared.limits,
            tuple(plan_.prepared.order),
            plan_.cell_weights,
            {name: plan_.residual_gain(name) for name in plan_.prepared.variables},
            plan_.wrap_cells,
            plan_.prepared.flip,
            plan_.field_labels,
            plan_.checkpoint.config_sha256,
            plan_.polar_caps,
        ),
        name=f"context-{job.job_id[:16]}",
    )
    inputs = {}
    for name in plan_.prepared.variables:
        leading, _ = variable_layout(ds, plan_, name)
        rechunk = {dim: -1 for dim in leading[1:]} | ({leading[0]: job.options.time_chunk} if leading else {})
        # infinite cells missing once per block, as the in-memory path reads them (climgen.inputs)
        lazy = ds[name].chunk(rechunk | {axes.y: -1, axes.x: -1}).data
        inputs[name] = SharedBlocks(lazy.map_blocks(infinite_as_missing, dtype=lazy.dtype))
    ny, nx = layout.shape
    blocks: dict[str, object] = {}

    def block(task: Task, origin_cell: tuple[int, int]):
        cells = (slice(origin_cell[0], min(ny, origin_cell[0] + step)), slice(origin_cell[1], min(nx, origin_cell[1] + step)))
        owner = Task(task.variable, task.member, task.leading, cells)
        if owner.key not in blocks:
            window = refiner.context_for(cells, refiner.tiles_for(cells, owned=True))
            cov_window = None if covariates is None else covariates[(slice(None), *fine_slices(window, factor))]
            blocks[owner.key] = dask.delayed(refine_group, pure=False)(
                inputs[task.variable].piece(task.leading, window),
                cov_window,
                owner,
                context,
                (window[0].start, window[1].start),
                dask_key_name=f"tiles-{owner.key}",
            )
        return blocks[owner.key]

    writes = []
    for task in pending:
        owners = sorted(
            {(t.core[0].start // step * step, t.core[1].start // step * step) for t in refiner.tiles_for(task.region)}
        )
        _, dims = variable_layout(ds, plan_, task.variable)
        chain = next((chain for chain in plan_.prepared.order if task.variable in chain), (task.variable,))
        chained = [Task(name, task.member, task.leading, task.region) for name in chain]
        writes.append(
            dask.delayed(write_region, pure=False)(
                {part.variable: inputs[part.variable].piece(task.leading, task.region) for part in chained},
                {part.variable: [block(part, owner) for owner in owners] for part in chained},
                task,
                context,
                dims,
                dask_key_name=f"refine-{task.key}",
            )
        )
    return writes


def model_reference(plan_: Plan) -> str:
    """The checkpoint as an absolute path, so workers in other folders or on other hosts
    sharing the file system find it (their copy is checked against the plan's SHA-256)."""
    return str(Path(plan_.checkpoint.path).resolve()) if plan_.checkpoint.path else plan_.config.model

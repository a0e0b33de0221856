"""Streaming, resumable refinement into a zarr store (and from it to NetCDF), run by dask.

The domain is cut into *regions* of ``region_tiles`` x ``region_tiles`` tiles and the leading
(time) dimension into chunks of ``time_chunk`` steps. Each (variable, member, time chunk,
region) is one dask task: it reads its coarse window (the region plus the tiles' halos) from
the lazily opened input, refines it with :class:`climgen.refine.TileRefiner`, writes the result
into its own zarr chunks with an xarray region write, then records itself in the store's
manifest. Because a region's numbers depend only on the coarse cells around it and noise is
keyed on the global grid, results are identical whatever the chunking, worker count or
scheduling, and a rerun after a crash (even ``kill -9``) only does what the manifest lacks.

The store is built beside the output as ``.NAME.partial-job-ID`` (ID: a hash of the input,
options and model), marked complete when every task is done, and only then renamed (or, for a
``.nc`` output, converted chunk by chunk to a NetCDF file that is renamed in turn).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import xarray as xr

from climgen._torch import resolve_device, resolve_precision, torch_threads
from climgen.allocator import retain_freed_memory
from climgen.conservation import format_bounds
from climgen.depth.skill import detail_kept
from climgen.errors import ConfigError, OutputExistsError, OutputWriteError
from climgen.grid import find_spatial_axes, spatial_last
from climgen.io import cf
from climgen.io.encoding import encoding_for, match_range_types, restore_attribute_types, unlimited_dims
from climgen.io.lock import OutputLock
from climgen.io.manifest import drop_damaged, store_region
from climgen.io.write import check_output, nearly_full, output_format
from climgen.job_identity import job_identity
from climgen.leftovers import other_partials, started_by
from climgen.pipeline import Plan, SynthesisConfig, _call_text, assemble, depth_policy_text, plan
from climgen.progress import progress_bar
from climgen.scoring import stream_scores
from climgen.stream_options import StreamOptions, check_scheduler_address  # noqa: F401 (public here)
from climgen.tasks import Task, delayed_tasks, model_reference, variable_layout

FULL_OR_READ_ONLY = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})
"""Write errors a user fixes by freeing space or permissions, then resumes."""


@dataclass
class Job:
    """A planned streaming job: the refinement plan, its tasks, and the store it fills."""

    plan: Plan
    options: StreamOptions
    output: Path
    job_id: str
    tasks: list[Task]
    field_counts: dict[str, int] = field(default_factory=dict)
    precision: str = "float32"
    """The model's precision, resolved once where the job is planned: every worker runs in it,
    so a cluster whose nodes differ (bf16 on some CPUs only) gives the same bits."""

    @property
    def store(self) -> Path:
        return self.output.with_name(f".{self.output.name}.partial-job-{self.job_id[:16]}.zarr")

    @property
    def manifest(self) -> Path:
        """One empty file per finished task, beside the store (zarr ignores nothing inside it)."""
        return self.store.with_suffix(".manifest")

    def done(self) -> set[str]:
        """The tasks the manifest records as finished (entries being written are not)."""
        folder = self.manifest
        return {path.name for path in folder.iterdir() if not path.name.startswith(".")} if folder.is_dir() else set()

    def output_bytes(self) -> int:
        factor = self.plan.config.factor
        ny, nx = self.plan.input_shape
        return sum(count * self.plan.config.members for count in self.field_counts.values()) * (ny * nx * factor * factor * 4)

    def finished(self) -> bool:
        """Whether the output is this job's, complete."""
        return _finished_job(self.output) == self.job_id

    def _output_state(self) -> str:
        """What a run would find at the output: this job finished, or another job's output."""
        if not self.output.exists():
            return ""
        if self.finished():
            return "; already complete: a run does nothing"
        return "; the path holds another output: a run needs --overwrite"

    def describe(self) -> str:
        """The plan as text (``climgen run --dry-run``)."""
        plan_, layout = self.plan, self.plan.prepared.layout
        factor, full = plan_.config.factor, plan_.full_depth
        compute = plan_.provenance(plan_.model_fields(self.field_counts), 0.0)["compute"]
        histogram = ", ".join(f"depth {k}: {int((plan_.depth == k).sum())}" for k in range(full + 1))
        # a finished NetCDF output keeps no record of its tasks: every one of them is done
        done = len(self.tasks) if self.finished() else len(self.done() & {task.key for task in self.tasks})
        ny, nx = plan_.input_shape
        halo = f"halo {layout.halo}"
        if layout.later_halo not in (None, layout.halo):
            halo += f" ({layout.later_halo} for later stages' windows)"
        lines = [
            f"output      {self.output} ({output_format(self.output)}), job {self.job_id[:16]}{self._output_state()}",
            f"grid        {ny}x{nx} -> {ny * factor}x{nx * factor} (x{factor}); variables {', '.join(plan_.prepared.variables)}",
            *(
                [f"longitude   global: {plan_.wrap_cells} columns wrapped beyond each edge, so the seam has context"]
                if plan_.wrap_cells
                else []
            ),
            f"fields      {sum(self.field_counts.values())} per member, {plan_.config.members} member(s)",
            f"tiles       {layout.grid_shape[0]}x{layout.grid_shape[1]} of {layout.tile} cells, {halo}, "
            f"{layout.merge}x{layout.merge} share a window; {histogram}",
            f"depth       {depth_policy_text(plan_.depth_policy)}",
            f"tasks       {len(self.tasks)} ({self.options.region_tiles}x{self.options.region_tiles} tiles, "
            f"{self.options.time_chunk} steps each); {done} already done",
            f"compute     {compute['macs'] / 1e9:.1f} GMAC ({100 * compute['fraction_of_uniform']:.0f}% of uniform depth)",
            f"output size {self.output_bytes() / 2**20:.1f} MiB uncompressed float32",
        ]
        for name, (limits, source) in plan_.prepared.bounds.items():
            if limits != (None, None):
                lines.append(f"bounds      {name}: {format_bounds(limits)} ({source})")
        lines += [f"order       {' <= '.join(chain)}" for chain in plan_.prepared.order]
        if plan_.config.conservation == "area":
            lines.append("blocks      area-weighted means equal the coarse values")
        lines += [f"detail      {text}" for text in detail_kept(plan_.residual_gains)]
        return "\n".join(lines)


def _planning_device(options: StreamOptions) -> str:
    """Where the planning self-tests run: the run's device where this machine has it (a remote
    cluster's workers may have GPUs it lacks: then its own)."""
    try:
        return resolve_device(options.device)
    except ConfigError:
        return resolve_device("auto")


def _hardware(plan_: Plan, options: StreamOptions) -> dict:
    """The device and precision the model runs in, as resolved where the job is planned: a
    device asked for by name (``cuda`` on a remote cluster's GPUs that this machine lacks) as
    named, ``auto`` as this machine resolves it (a remote cluster's workers resolve their own);
    the precision from that device, once for every worker."""
    device = options.device if options.device != "auto" else _planning_device(options)
    return {"device": device, "precision_used": resolve_precision(plan_.config.precision, device)}


def _tasks(ds: xr.Dataset, plan_: Plan, options: StreamOptions) -> tuple[list[Task], dict[str, int]]:
    axes, layout = plan_.prepared.axes, plan_.prepared.layout
    step = options.region_tiles * layout.tile
    ny, nx = layout.shape
    # regions cover the output's columns only (not a global grid's wrapped ones); they start
    # at its first column, so each writes whole chunks of the store
    first, stop = plan_.wrap_cells, nx - plan_.wrap_cells
    regions = [
        (slice(y0, min(ny, y0 + step)), slice(x0, min(stop, x0 + step)))
        for y0 in range(0, ny, step)
        for x0 in range(first, stop, step)
    ]
    tasks, counts = [], {}
    for name in plan_.prepared.variables:
        leading = [ds.sizes[dim] for dim in ds[name].dims if dim not in (axes.y, axes.x)]
        counts[name] = int(np.prod(leading)) if leading else 1
        if leading:
            blocks = [
                (slice(t, min(leading[0], t + options.time_chunk)), *(slice(0, n) for n in leading[1:]))
                for t in range(0, leading[0], options.time_chunk)
            ]
        else:
            blocks = [()]
        for member in range(plan_.config.members):
            tasks += [Task(name, member, block, region) for block in blocks for region in regions]
    return tasks, counts


def prepare_job(
    ds: xr.Dataset,
    output: str | Path,
    config: SynthesisConfig,
    covariates: Mapping | None = None,
    options: StreamOptions | None = None,
) -> Job:
    """Plan a streaming job (reads the input once, by time chunks, to score the tiles)."""
    options = (options or StreamOptions()).validate()
    output = Path(output).expanduser().resolve()  # workers in other folders (a cluster's) find it
    output_format(output)

    ds = spatial_last(ds, find_spatial_axes(ds))  # stores are written in (..., y, x) regions
    plan_ = plan(
        ds,
        config,
        covariates,
        scorer=lambda ds, prepared, factor: stream_scores(ds, prepared, factor, options.time_chunk),
        device=_planning_device(options),
    )
    tasks, counts = _tasks(plan_.source, plan_, options)
    hardware = _hardware(plan_, options)  # "auto" is "cpu" without a GPU; a cluster's workers choose their own
    device = options.device if options.scheduler else str(hardware["device"]).split(":")[0]
    identity = job_identity(plan_, options, ds, output, hardware["precision_used"], device)
    return Job(plan_, options, output, identity, tasks, counts, hardware["precision_used"])


def _template(ds: xr.Dataset, job: Job, command: str | None) -> tuple[xr.Dataset, dict]:
    """The output dataset with the refined variables as lazy placeholders, and its encoding."""
    import dask.array as da

    plan_, options = job.plan, job.options
    factor = plan_.config.factor
    fine_chunk = options.region_tiles * plan_.prepared.layout.tile * factor
    placeholders = {}
    for name in plan_.prepared.variables:
        leading, _ = variable_layout(ds, plan_, name)
        ordered = ds[name].transpose(*leading, plan_.prepared.axes.y, plan_.prepared.axes.x)
        shape = [ordered.shape[i] for i in range(len(leading))] + [n * factor for n in ordered.shape[-2:]]
        chunks = [options.time_chunk] + [1] * (len(leading) - 1) if leading else []
        chunks = chunks[: len(leading)] + [fine_chunk, fine_chunk]
        if plan_.config.members > 1:
            shape, chunks = [plan_.config.members, *shape], [1, *chunks]
        placeholders[name] = da.empty(shape, chunks=chunks, dtype=np.float32)
    provenance = plan_.provenance(plan_.model_fields(job.field_counts), 0.0) | {
        "seconds": None,
        "job": job.job_id,
        "region_tiles": options.region_tiles,
        **_hardware(plan_, options),
    }
    # a job started from Python says so in the history, not as the in-memory call
    call = command or _call_text(plan_.config, plan_.prepared.covariate_names, "climgen.streaming.run")
    result = assemble(ds, plan_, placeholders, provenance, call)
    for name in plan_.prepared.variables:  # a global grid's output is cropped: chunks from its first column
        placeholders[name] = da.empty(result[name].shape, chunks=placeholders[name].chunksize, dtype=np.float32)
        result[name] = result[name].copy(data=placeholders[name])
    # everything else is written with the template, now: a lazy variable carried over from a
    # dask-backed input (time bounds of files opened together) would otherwise never be written
    lazy = [name for name, variable in result.variables.items() if name not in placeholders and variable.chunks is not None]
    if lazy:
        computed = result[lazy].compute()
        result = result.assign({name: computed[name] for name in lazy if name in result.data_vars})
        result = result.assign_coords({name: computed[name] for name in lazy if name in result.coords})
    encoding = encoding_for(result, plan_.prepared.variables, (fine_chunk, fine_chunk), netcdf=False)
    for name in plan_.prepared.variables:
        encoding[name]["chunks"] = placeholders[name].chunksize
    return result, encoding


def _start_store(ds: xr.Dataset, job: Job, command: str | None) -> None:
    template, encoding = _template(ds, job, command)
    template.attrs["climgen_job"] = job.job_id
    template.attrs["climgen_complete"] = "no"
    template.to_zarr(job.store, mode="w", compute=False, encoding=encoding, zarr_format=2, consolidated=False)
    job.manifest.mkdir()


def verified_done(job: Job) -> set[str]:
    """The finished tasks whose values in the store still match their recorded checksum; the
    entries of the others are removed, so they are refined again (:mod:`climgen.io.manifest`)."""
    done = job.done()
    if not done:
        return done
    plan_ = job.plan
    entries = []
    for task in job.tasks:
        if task.key in done:
            _, dims = variable_layout(plan_.source, plan_, task.variable)
            region = store_region(
                task.region, task.leading, task.member, dims, plan_.config.factor, plan_.wrap_cells, plan_.config.members
            )
            entries.append((task.key, task.variable, region))
    return done - set(drop_damaged(job.store, job.manifest, entries))


def _execute(delayed: list, job: Job) -> None:
    """Run the tasks on the local threads (no cluster) or on a dask.distributed cluster."""
    import dask
    from dask.system import CPU_COUNT

    options = job.options
    total, already = len(job.tasks), len(job.tasks) - len(delayed)
    bar = progress_bar(total, already, "refining", "task", enabled=options.progress)
    try:
        if options.workers or options.scheduler:
            from climgen.workers import attach_client

            with attach_client(options, model_reference(job.plan)) as client:
                from distributed import as_completed

                futures = client.compute(delayed)
                for future in as_completed(futures):
                    future.result()
                    bar.update(1)
        else:
            from dask.callbacks import Callback

            class _Ticks(Callback):
                def _posttask(self, key, result, dsk, state, worker_id):
                    if str(key).startswith("refine-"):
                        bar.update(1)

            retain_freed_memory()  # see climgen.allocator
            # a pool of our own, left only when its tasks in flight are done: after a write
            # error (a full disk) no task is still writing when the error reaches the user
            with _Ticks(), ThreadPoolExecutor(CPU_COUNT) as pool:
                with torch_threads(1):  # one thread per task, tasks in parallel: same bits as on any cluster
                    dask.compute(*delayed, scheduler="threads", pool=pool)
    finally:
        bar.close()


def _finish(job: Job, seconds: float) -> Path:
    """Mark the store complete and move it (or a NetCDF made from it) to the output path."""
    import zarr

    group = zarr.open_group(str(job.store), mode="r+", zarr_format=2)
    provenance = json.loads(group.attrs["climgen_provenance"])
    provenance["seconds"] = round(seconds, 3)
    group.attrs["climgen_provenance"] = json.dumps(provenance, sort_keys=True)
    group.attrs["climgen_complete"] = "yes"
    zarr.consolidate_metadata(str(job.store))
    shutil.rmtree(job.manifest, ignore_errors=True)
    _replace(job)
    return job.output


def _replace(job: Job) -> None:
    output = job.output
    if output_format(output) == "zarr":
        source = job.store
    else:
        source = job.store.with_suffix(".nc")
        with open_output(job.store, consolidated=True, chunks={}) as stored:
            variables = cf.refined_variables(stored)
            factor = job.plan.config.factor
            fine_chunk = job.options.region_tiles * job.plan.prepared.layout.tile * factor
            encoding = encoding_for(stored, variables, (fine_chunk, fine_chunk), netcdf=True)
            for name, variable in stored.variables.items():
                # decoding moved the maps' "coordinates" (2-D latitude and longitude) into encoding
                linked = variable.encoding.get("coordinates")
                variable.encoding = {} if linked is None else {"coordinates": linked}
                match_range_types(variable, encoding.get(name, {}).get("dtype"))  # zarr's JSON widened them
            restore_attribute_types(stored, job.plan.source)
            try:
                records = unlimited_dims(job.plan.source, stored)
                stored.to_netcdf(source, encoding=encoding, format="NETCDF4", unlimited_dims=records)
            except RuntimeError as error:  # netCDF4 says "NetCDF: HDF error" when the disk fills
                full = nearly_full(source.parent)
                if source.exists():  # emptied first: a handle the failed close left open would keep its space
                    os.truncate(source, 0)
                source.unlink(missing_ok=True)
                if full:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)) from error
                raise
            except BaseException:  # interrupted: a half-written file is no output (the store is kept)
                source.unlink(missing_ok=True)
                raise
    if output.exists():
        retired = output.with_name(f".{output.name}.old-{job.job_id[:8]}")
        os.replace(output, retired)
        os.replace(source, output)
        shutil.rmtree(retired, ignore_errors=True) if retired.is_dir() else retired.unlink()
    else:
        os.replace(source, output)
    if job.store.exists():
        shutil.rmtree(job.store)


def open_output(path: Path, **options) -> xr.Dataset:
    """A climgen output or partial store (:func:`climgen.io.open.open_decoded`)."""
    from climgen.io.open import open_decoded

    return open_decoded(path, engine="zarr" if path.is_dir() or output_format(path) == "zarr" else None, **options)


def _finished_job(output: Path) -> str | None:
    """The job id recorded in a finished output (None when there is none or it is not ours)."""
    if not output.exists():
        return None
    try:
        with open_output(output) as done:
            return done.attrs.get("climgen_job")
    except (OSError, ValueError, KeyError):
        return None


def run(
    ds: xr.Dataset,
    output: str | Path,
    config: SynthesisConfig,
    covariates: Mapping | None = None,
    options: StreamOptions | None = None,
    overwrite: bool = False,
    command: str | None = None,
    dry_run: bool = False,
) -> Job:
    """Refine ``ds`` into ``output`` (.zarr or .nc), resuming a killed run of the same job.

    Rerunning a finished job does nothing; a different job on an existing output, or on the
    leftovers of an unfinished different job, fails unless ``overwrite``.
    """
    started = time.perf_counter()
    output = Path(output).expanduser()
    if dry_run:
        return prepare_job(ds, output, config, covariates, options)
    output_format(output)  # a wrong suffix is an error before anything is written
    # one writer per output, taken before any work: a folder that cannot be written is said at once
    with OutputLock(output, wait=(options or StreamOptions()).wait):
        if not overwrite and output.exists() and _finished_job(output) is None:
            # no job's output (a file of one's own, or cut short): refused before planning, which
            # reads the whole input; a finished job's output waits for the plan to say if it is this one
            check_output(output, overwrite)
        job = prepare_job(ds, output, config, covariates, options)
        try:
            _write(job, overwrite, command, started)
        except OSError as error:
            if error.errno not in FULL_OR_READ_ONLY:
                raise
            job.store.with_suffix(".nc").unlink(missing_ok=True)  # a NetCDF conversion cut short
            raise OutputWriteError(
                f"{os.strerror(error.errno)} while writing {output}: nothing is at {output.name}; the finished tasks are "
                f"kept in {job.store.name}, so free space (or make the folder writable) and rerun the same command to resume"
            ) from None
    return job


def _write(job: Job, overwrite: bool, command: str | None, started: float) -> None:
    """Build or resume the job's partial store and move it to the output (under its lock)."""
    output = job.output
    if job.finished() and not overwrite:
        # a run stopped between moving its output into place and removing its own leftovers
        shutil.rmtree(job.store, ignore_errors=True)
        job.store.with_suffix(".nc").unlink(missing_ok=True)
        shutil.rmtree(job.manifest, ignore_errors=True)
        job.tasks = []
        return
    check_output(output, overwrite, [source["path"] for source in job.plan.input_files])
    others = other_partials(job.output, job.store)
    if others and not overwrite:
        store = next((other for other in others if other.suffix == ".zarr"), others[0])
        command = started_by(store)
        raise OutputExistsError(
            f"an unfinished different job left {store.name} beside {output.name}"
            + (f" (started by: {command})" if command else "")
            + "; rerun that job to finish it, or pass --overwrite (overwrite=True, overwrite: true in a recipe) to discard it. Jobs differ in any "
            "option, input file or model, and in how the work is cut (--time-chunk, --region-tiles)"
        )
    for other in others:
        shutil.rmtree(other, ignore_errors=True) if other.is_dir() else other.unlink()
    if _store_complete(job.store):  # killed while converting or renaming: only that is left
        _replace(job)
        return
    fresh = not job.manifest.is_dir()
    if fresh:
        if job.store.exists():
            shutil.rmtree(job.store)
        _start_store(job.plan.source, job, command)
    done = verified_done(job)
    pending = [task for task in job.tasks if task.key not in done]
    try:
        _execute(delayed_tasks(job.plan.source, job, pending), job)
    except ConfigError:
        # refused before any task ran (a scheduler out of reach): a store this run began holds
        # nothing to resume, and left behind it would block the next, different run
        if fresh and not verified_done(job):
            shutil.rmtree(job.store, ignore_errors=True)
            shutil.rmtree(job.manifest, ignore_errors=True)
        raise
    _finish(job, time.perf_counter() - started)


def _store_complete(store: Path) -> bool:
    attributes = store / ".zattrs"
    return attributes.exists() and json.loads(attributes.read_text()).get("climgen_complete") == "yes"

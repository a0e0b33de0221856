"""Streaming refinement through dask tasks into zarr: same numbers as in memory, whatever the
chunking or workers; resumable after kill -9; reruns and other jobs handled."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import xarray as xr
import yaml

from climgen import pipeline, planning, streaming
from climgen.errors import ConfigError, OutputExistsError
from climgen.io.manifest import store_region
from climgen.scoring import time_blocks
from climgen.tasks import delayed_tasks
from climgen.testing import make_dataset


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """Three time steps with missing cells, written to NetCDF and opened lazily."""
    ds = make_dataset("latlon", shape=(40, 36), times=3, seed=4)
    ds["tas"][1, 5:12, 3:9] = np.nan
    path = tmp_path_factory.mktemp("stream") / "in.nc"
    ds.to_netcdf(path)
    return path


@pytest.fixture(scope="module")
def in_memory(source):
    with xr.open_dataset(source) as ds:
        return pipeline.synthesize(ds, factor=4, seed=5, members=2, tile_size=8)


def _stream(source, output, **options):
    config = pipeline.make_config(factor=4, seed=5, members=2, tile_size=8)
    with xr.open_dataset(source) as ds:
        return streaming.run(ds, output, config, options=streaming.StreamOptions(progress=False, **options))


@pytest.mark.parametrize("region_tiles, time_chunk", [(1, 1), (2, 2), (8, 3)])
def test_streamed_output_equals_in_memory_for_any_chunking(source, in_memory, tmp_path, region_tiles, time_chunk):
    output = tmp_path / "out.zarr"
    job = _stream(source, output, region_tiles=region_tiles, time_chunk=time_chunk)
    assert len(job.tasks) == 2 * -(-3 // time_chunk) * (-(-5 // region_tiles)) * (-(-5 // region_tiles))
    with xr.open_zarr(output) as got:
        assert got["tas"].dims == in_memory["tas"].dims
        for name in ("tas", "complexity_score", "refinement_depth"):
            np.testing.assert_array_equal(got[name].values, in_memory[name].values)
        assert np.isnan(got["tas"].values[:, 1, 20:48, 12:36]).all()
        assert got.attrs["climgen_complete"] == "yes"
        assert got["tas"].encoding["chunks"] == (1, min(3, time_chunk), min(160, 32 * region_tiles), min(144, 32 * region_tiles))
    assert not list(tmp_path.glob(".out.zarr.partial-*")), "the partial store and manifest are moved or removed"


@pytest.mark.parametrize("region_tiles", [1, 2, 3])
def test_each_group_of_tiles_sharing_windows_is_refined_by_one_task(source, tmp_path, region_tiles):
    config = pipeline.make_config(factor=4, seed=5, members=2, tile_size=8)
    options = streaming.StreamOptions(progress=False, region_tiles=region_tiles, time_chunk=1)
    with xr.open_dataset(source) as ds:
        job = streaming.prepare_job(ds, tmp_path / "out.zarr", config, options=options)
        graph = {key for write in delayed_tasks(ds, job, job.tasks) for key in dict(write.__dask_graph__())}
    layout = job.plan.prepared.layout
    rows, cols = layout.grid_shape
    assert layout.merge == 4 and (rows, cols) == (5, 5)
    refining = [key for key in graph if str(key).startswith("tiles-")]
    assert len(refining) == 2 * 3 * 2 * 2  # members x time steps x groups, not one per region
    writing = [key for key in graph if str(key).startswith("refine-")]
    assert len(writing) == 2 * 3 * (-(-5 // region_tiles)) ** 2


def test_netcdf_output_is_converted_from_the_finished_store(source, in_memory, tmp_path):
    output = tmp_path / "out.nc"
    _stream(source, output, region_tiles=2)
    with xr.open_dataset(output) as got:
        np.testing.assert_array_equal(got["tas"].values, in_memory["tas"].values)
        assert got["tas"].encoding["zlib"] and got["tas"].attrs["units"] == "K"
        for name in ("complexity_score", "refinement_depth"):  # CF: valid_range of the data's type
            assert np.asarray(got[name].attrs["valid_range"]).dtype == got[name].encoding["dtype"]
        assert got.attrs["Conventions"] == "CF-1.8, ACDD-1.3"


def test_local_cluster_with_two_workers_gives_the_same_numbers(source, in_memory, tmp_path):
    pytest.importorskip("distributed")
    output = tmp_path / "out.zarr"
    _stream(source, output, region_tiles=2, time_chunk=2, workers=2)
    with xr.open_zarr(output) as got:
        np.testing.assert_array_equal(got["tas"].values, in_memory["tas"].values)


def test_rerunning_a_finished_job_does_nothing_and_other_jobs_need_overwrite(source, tmp_path):
    output = tmp_path / "out.zarr"
    _stream(source, output, region_tiles=2)
    stamp = (output / ".zattrs").stat().st_mtime_ns
    again = _stream(source, output, region_tiles=2)
    assert again.tasks == [] and (output / ".zattrs").stat().st_mtime_ns == stamp
    config = pipeline.make_config(factor=4, seed=6, members=2, tile_size=8)  # another seed: another job
    with xr.open_dataset(source) as ds:
        with pytest.raises(OutputExistsError, match="exists"):
            streaming.run(ds, output, config, options=streaming.StreamOptions(progress=False))
        streaming.run(ds, output, config, options=streaming.StreamOptions(progress=False), overwrite=True)
    with xr.open_zarr(output) as got:
        assert '"seed": 6' in got.attrs["climgen_provenance"]


def test_another_depth_map_is_another_job(source, tmp_path, monkeypatch):
    """A half-done job must not be resumed by a climgen whose depth policy changed since: its
    finished tiles were refined to other depths."""
    config = pipeline.make_config(factor=4, seed=5, tile_size=8)  # members take full depth: one field
    options = streaming.StreamOptions(progress=False, region_tiles=2)
    with xr.open_dataset(source) as ds:
        before = streaming.prepare_job(ds, tmp_path / "out.zarr", config, options=options)
        assert streaming.prepare_job(ds, tmp_path / "out.zarr", config, options=options).job_id == before.job_id
        # the device as it resolves, not as it was typed: on a machine without a GPU, auto is the CPU
        on_cpu = streaming.StreamOptions(progress=False, region_tiles=2, device="cpu")
        same_device = streaming.prepare_job(ds, tmp_path / "out.zarr", config, options=on_cpu).job_id == before.job_id
        assert same_device or torch.cuda.is_available()
        monkeypatch.setattr(planning, "DEFAULT_TOLERANCE", 1e-6)  # a climgen whose default tolerance differs
        after = streaming.prepare_job(ds, tmp_path / "out.zarr", config, options=options)
        looser = streaming.prepare_job(
            ds,
            tmp_path / "out.zarr",
            pipeline.make_config(factor=4, seed=5, tile_size=8, tolerance=0.5),
            options=options,
        )
    assert (after.plan.depth != before.plan.depth).any()
    assert after.job_id != before.job_id
    assert len({before.job_id, after.job_id, looser.job_id}) == 3  # the policy is part of the job


def test_an_input_changed_in_place_is_another_job(tmp_path):
    """A zarr store whose chunks are rewritten, or the second of several files edited, makes
    another job: a half-done output is never resumed with the new data."""
    import os
    import time

    from climgen.io.open import open_input, open_inputs

    data = make_dataset("latlon", shape=(24, 24), times=4)
    data.to_zarr(tmp_path / "in.zarr")
    data.isel(time=[0, 1]).to_netcdf(tmp_path / "a.nc")
    data.isel(time=[2, 3]).to_netcdf(tmp_path / "b.nc")
    config = pipeline.make_config(factor=2, seed=1, tile_size=8)
    options = streaming.StreamOptions(progress=False)

    def job(*paths):
        with open_inputs(list(paths)) if len(paths) > 1 else open_input(paths[0]) as ds:
            return streaming.prepare_job(ds, tmp_path / "out.zarr", config, options=options).job_id

    zarr_before, files_before = job(tmp_path / "in.zarr"), job(tmp_path / "a.nc", tmp_path / "b.nc")
    assert job(tmp_path / "in.zarr") == zarr_before and job(tmp_path / "a.nc", tmp_path / "b.nc") == files_before
    time.sleep(0.01)
    (data[["tas"]] + 10).drop_vars(["time", "lat", "lon"]).to_zarr(tmp_path / "in.zarr", mode="r+")
    warmer = data.isel(time=[2, 3]) + 10
    warmer.to_netcdf(tmp_path / "b2.nc")
    os.replace(tmp_path / "b2.nc", tmp_path / "b.nc")
    assert job(tmp_path / "in.zarr") != zarr_before
    assert job(tmp_path / "a.nc", tmp_path / "b.nc") != files_before


def test_a_finished_job_removes_what_a_run_stopped_after_its_move_left(source, tmp_path):
    """Killed between moving its NetCDF into place and removing its store, a job leaves the
    store and manifest beside the output: the rerun that finds the job done removes them."""
    config = pipeline.make_config(factor=4, seed=5, tile_size=8)
    options = streaming.StreamOptions(progress=False, region_tiles=2)
    output = tmp_path / "out.nc"
    with xr.open_dataset(source) as ds:
        streaming.run(ds, output, config, options=options)
        job = streaming.prepare_job(ds, output, config, options=options)
        job.store.mkdir()
        job.manifest.mkdir()
        again = streaming.run(ds, output, config, options=options)
    assert again.tasks == [] and not job.store.exists() and not job.manifest.exists()


def test_scoring_a_series_from_a_file_reads_it_one_time_chunk_at_a_time(tmp_path):
    """The complexity pass of a streamed job hands dask lazy blocks of a file's variable, not
    the whole series read into memory first."""
    import dask.array

    make_dataset("latlon", shape=(16, 16), times=6).to_netcdf(tmp_path / "series.nc")
    with xr.open_dataset(tmp_path / "series.nc") as ds:  # not dask-backed, as the CLI opens it
        blocks = time_blocks(ds["tas"], 4)
        assert [block.shape[0] for block in blocks] == [4, 2]
        assert all(isinstance(block, dask.array.Array) for block in blocks)
        assert not ds["tas"].variable._in_memory
        np.testing.assert_array_equal(np.concatenate([np.asarray(block) for block in blocks]), ds["tas"].values)


def test_options_are_validated():
    with pytest.raises(ConfigError, match="not both"):
        streaming.StreamOptions(workers=2, scheduler="tcp://localhost:8786").validate()
    with pytest.raises(ConfigError, match=">= 1"):
        streaming.StreamOptions(time_chunk=0).validate()


def _cli(*arguments):
    return [sys.executable, "-m", "climgen.cli", *map(str, arguments)]


KILL_OPTIONS = ["--factor", "4", "--seed", "9", "--region-tiles", "1", "--time-chunk", "1", "--quiet"]


def _reference_and_killed_job(tmp_path, tasks_done: int, climgen_cli, stop: int = signal.SIGKILL):
    """A 48 x 48 x 6 input, its undisturbed refinement (``reference.zarr``) and a job into
    ``killed.zarr`` stopped by signal ``stop`` once ``tasks_done`` tasks are in its manifest;
    returns the input, the reference, the target, the manifest folder and what the job said."""
    source = tmp_path / "in.nc"
    make_dataset("latlon", shape=(48, 48), times=6, seed=2).to_netcdf(source)
    reference = tmp_path / "reference.zarr"
    assert climgen_cli("synthesize", source, reference, *KILL_OPTIONS).returncode == 0
    target = tmp_path / "killed.zarr"
    job = subprocess.Popen(
        _cli("synthesize", source, target, *KILL_OPTIONS), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    deadline, done = time.monotonic() + 300, []
    while time.monotonic() < deadline and len(done) < tasks_done and job.poll() is None:
        time.sleep(0.05)
        done = [path for folder in tmp_path.glob(".killed.zarr.partial-job-*.manifest") for path in folder.iterdir()]
    os.kill(job.pid, stop)
    _, said = job.communicate(timeout=60)
    expected = -signal.SIGKILL if stop == signal.SIGKILL else 128 + stop  # climgen exits 128 + the signal's number
    assert job.returncode == expected, f"the job finished before it could be stopped (use a larger input): {said}"
    return source, reference, target, next(tmp_path.glob(".killed.zarr.partial-job-*.manifest")), said


def test_kill_9_then_rerun_finishes_only_what_is_missing_and_matches(tmp_path, climgen_cli):
    source, reference, target, manifest, _ = _reference_and_killed_job(tmp_path, 5, climgen_cli)
    options = KILL_OPTIONS
    assert not target.exists(), "a killed job must not leave anything at the final path"
    finished = len(list(manifest.iterdir()))
    assert 5 <= finished < 54

    rerun = climgen_cli("synthesize", source, target, *options)
    assert rerun.returncode == 0, rerun.stderr
    assert not list(tmp_path.glob(".killed.zarr.partial-*"))
    with xr.open_zarr(reference) as expected, xr.open_zarr(target) as got:
        for name in ("tas", "complexity_score", "refinement_depth"):
            np.testing.assert_array_equal(got[name].values, expected[name].values)

    again = climgen_cli("synthesize", source, target, *options)
    assert again.returncode == 0 and "nothing to do" in again.stdout


def test_an_interruption_before_any_task_finished_says_what_it_left(tmp_path):
    from climgen.leftovers import interruption_note

    output = tmp_path / "out.zarr"
    assert interruption_note(output).endswith("nothing to resume, a rerun starts from the beginning")
    (tmp_path / ".out.zarr.partial-job-0123.manifest").mkdir()  # the job's store begun, no task recorded
    note = interruption_note(output)
    assert "the job's empty store .out.zarr.partial-job-0123.zarr is kept" in note and "another job needs --overwrite" in note


def test_sigterm_says_what_was_kept_releases_the_lock_and_the_rerun_resumes(tmp_path, climgen_cli):
    """A batch system's time limit sends SIGTERM: the job stops as on Ctrl-C, says in one line
    how many tasks it kept and how to resume, and leaves no lock behind."""
    source, reference, target, manifest, said = _reference_and_killed_job(tmp_path, 3, climgen_cli, signal.SIGTERM)
    finished = len([entry for entry in manifest.iterdir() if not entry.name.startswith(".")])
    assert said.strip().splitlines()[-1] == (
        f"climgen: interrupted: {finished} finished tasks kept in {manifest.with_suffix('.zarr').name}; "
        "rerun the same command to resume"
    )
    assert "Traceback" not in said and not list(tmp_path.glob(".killed.zarr.climgen-lock*"))
    # cut otherwise, it is another job: the refusal names the command that started this one
    other = climgen_cli("synthesize", source, target, *KILL_OPTIONS, "--time-chunk", "2")
    started = f"(started by: climgen synthesize {source} {target} {' '.join(KILL_OPTIONS)}); rerun that job"
    assert other.returncode == 2 and started in other.stderr
    assert climgen_cli("synthesize", source, target, *KILL_OPTIONS).returncode == 0
    with xr.open_zarr(reference) as expected, xr.open_zarr(target) as got:
        np.testing.assert_array_equal(got["tas"].values, expected["tas"].values)


def test_unfinished_other_job_blocks_until_overwrite(tmp_path, climgen_cli):
    source = tmp_path / "in.nc"
    make_dataset("latlon", shape=(24, 24), times=1).to_netcdf(source)
    leftover = tmp_path / ".out.zarr.partial-job-0123456789abcdef.zarr"
    leftover.mkdir()
    command = ["synthesize", source, tmp_path / "out.zarr", "--quiet"]
    refused = climgen_cli(*command)
    assert refused.returncode == 2 and "unfinished different job" in refused.stderr
    assert climgen_cli(*command, "--overwrite").returncode == 0
    assert not leftover.exists() and (tmp_path / "out.zarr").is_dir()


def test_run_recipe_dry_run_prints_the_plan_and_writes_nothing(tmp_path, climgen_cli):
    make_dataset("latlon", shape=(40, 40), times=4).to_netcdf(tmp_path / "in.nc")
    recipe = tmp_path / "job.yaml"
    job = {"input": "in.nc", "output": "out.zarr", "factor": 2, "merge_tiles": 2, "chunks": {"time_chunk": 2}}
    recipe.write_text(yaml.safe_dump(job))
    result = climgen_cli("run", recipe, "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "40x40 -> 80x80 (x2)" in result.stdout and "tasks       8 " in result.stdout
    assert "2x2 share a window" in result.stdout
    assert "0.1 MiB" in result.stdout and "GMAC" in result.stdout
    assert "depth       predicted gain, tolerance" in result.stdout
    assert not list(tmp_path.glob("*out.zarr*"))

    ran = climgen_cli("run", recipe, "--quiet", "--precision", "float32")
    assert ran.returncode == 0, ran.stderr
    with xr.open_zarr(tmp_path / "out.zarr") as got:
        assert got["tas"].shape == (4, 80, 80)
        provenance = json.loads(got.attrs["climgen_provenance"])
        assert (provenance["precision"], provenance["precision_used"]) == ("float32", "float32")
    # the plan says what a run would find at the output
    finished = climgen_cli("run", recipe, "--dry-run", "--precision", "float32")
    assert "already complete: a run does nothing" in finished.stdout and "; 8 already done" in finished.stdout
    # a finished NetCDF output keeps no task records, and its plan says every task is done too
    netcdf = ("--output", tmp_path / "out.nc", "--precision", "float32")
    assert climgen_cli("run", recipe, "--quiet", *netcdf).returncode == 0
    assert "; 8 already done" in climgen_cli("run", recipe, "--dry-run", *netcdf).stdout
    other = climgen_cli("run", recipe, "--dry-run", "--precision", "bfloat16")
    assert "holds another output: a run needs --overwrite" in other.stdout
    # another job onto the same output: refused, naming the flag that replaces it
    refused = climgen_cli("run", recipe, "--quiet", "--precision", "bfloat16")
    assert refused.returncode == 2 and "--overwrite" in refused.stderr
    replaced = climgen_cli("run", recipe, "--quiet", "--precision", "bfloat16", "--overwrite")
    assert replaced.returncode == 0, replaced.stderr


def test_run_recipe_errors_name_the_field(tmp_path, climgen_cli):
    recipe = tmp_path / "job.yaml"
    recipe.write_text(yaml.safe_dump({"input": "in.nc", "output": "out.zarr", "factr": 2}))
    result = climgen_cli("run", recipe)
    assert result.returncode == 2 and "factr" in result.stderr and "Traceback" not in result.stderr
    recipe.write_text(yaml.safe_dump({"input": "missing-*.nc", "output": "out.zarr"}))
    result = climgen_cli("run", recipe)
    assert result.returncode == 2 and "no input matches" in result.stderr


def test_a_lazy_input_is_read_a_few_times_not_once_per_task(tmp_path):
    """Every task used to get its own slice of the dask input, which dask optimised into the
    task's graph with the chunk's read: one 12-step chunk was read 42 times by a job of 32
    tasks. The tasks now cut their pieces from one shared read per chunk; what is left is
    planning's (the scores, the self-tests' fields, the float32 check)."""
    from climgen.testing import counted_reads

    ds = make_dataset("latlon", shape=(128, 128), times=12)
    lazy, counter = counted_reads(ds["tas"].values, (12, -1, -1))
    ds["tas"] = ds["tas"].copy(data=lazy)
    options = streaming.StreamOptions(progress=False, region_tiles=1)
    job = streaming.run(ds, tmp_path / "out.zarr", pipeline.make_config(factor=4), options=options)
    assert len(job.tasks) >= 16
    assert sum(counter.values()) <= 6, counter
    in_memory = ds.climgen.synthesize(factor=4)
    with xr.open_zarr(tmp_path / "out.zarr") as streamed:
        assert np.array_equal(streamed["tas"].values, in_memory["tas"].values)
        # the history names the call that made it, not the in-memory one
        assert ": climgen.streaming.run(factor=4, " in streamed.attrs["history"].splitlines()[0]


def test_a_lazy_input_is_read_once_in_memory_and_its_result_outlives_it():
    """The refinement in memory read the whole input twice (planning, then the refinement)
    and left variables carried over from it lazy, so the result still read the input's files
    when written (and failed once they were closed)."""
    from climgen.testing import counted_reads

    ds = make_dataset("latlon", shape=(32, 32), times=6)
    lazy, counter = counted_reads(ds["tas"].values, (2, -1, -1))
    series, series_reads = counted_reads(ds["tas"].values.mean(axis=(1, 2)), (2,))
    ds = ds.assign(tas=ds["tas"].copy(data=lazy), global_mean=(("time",), series))
    result = ds.climgen.synthesize(factor=2)
    assert max(counter.values()) == 1 and len(counter) == 3
    assert result["global_mean"].chunks is None and sum(series_reads.values()) == 3


def test_variables_carried_from_a_dask_backed_input_are_written(tmp_path):
    """Files opened together (open_mfdataset) give dask-backed time bounds; the store's template
    is written without computing its placeholders, and must still hold them."""
    from importlib import resources

    sample = str(resources.files("climgen") / "data" / "africa_tas_monthly_2005.nc")
    config = pipeline.make_config(factor=2, variables=["tas"])
    with xr.open_dataset(sample, chunks={}) as ds:
        assert ds["time_bnds"].chunks is not None
        streaming.run(ds, tmp_path / "out.zarr", config, options=streaming.StreamOptions(progress=False))
        with xr.open_zarr(tmp_path / "out.zarr") as out:
            assert np.array_equal(out["time_bnds"].values, ds["time_bnds"].values)


def test_imerg_layout_time_lon_lat_streams_with_spatial_dimensions_last(tmp_path):
    """IMERG stores precipitation as (time, lon, lat) under a bare name: streamed, it is
    refined in (time, lat, lon) order, equal to the in-memory result, and kept non-negative."""
    rng = np.random.default_rng(3)
    lon, lat = np.arange(60.25, 72, 0.5), np.arange(5.25, 17, 0.5)
    rain = rng.gamma(0.3, 2.0, (2, lon.size, lat.size)).astype(np.float32)
    ds = xr.Dataset(
        {"precipitation": (("time", "lon", "lat"), rain, {"units": "mm/hr", "long_name": "precipitation"})},
        coords={"time": np.array(["2022-06-15", "2022-06-16"], dtype="datetime64[ns]"), "lon": lon, "lat": lat},
    )
    ds.to_netcdf(tmp_path / "imerg.nc")
    in_memory = ds.climgen.synthesize(factor=2, seed=1)
    config = pipeline.make_config(factor=2, seed=1)
    with xr.open_dataset(tmp_path / "imerg.nc") as opened:
        streaming.run(opened, tmp_path / "out.zarr", config, options=streaming.StreamOptions(progress=False, region_tiles=1))
    with xr.open_zarr(tmp_path / "out.zarr") as out:
        assert out["precipitation"].dims == ("time", "lat", "lon")
        expected = in_memory["precipitation"].transpose("time", "lat", "lon").values
        assert np.array_equal(out["precipitation"].values, expected)
        assert float(out["precipitation"].min()) >= 0.0  # a precipitation rate, by its IMERG name


def test_tampered_or_truncated_chunks_of_finished_tasks_are_redone(tmp_path, climgen_cli):
    """A job killed midway, then three of its finished tasks damaged in the partial store: one
    altered, one's chunk deleted, one's chunk truncated. The rerun checks every finished task
    against the checksum in the manifest, redoes those three, and matches an undisturbed run."""
    import zarr

    source, reference, target, manifest, _ = _reference_and_killed_job(tmp_path, 8, climgen_cli)
    options = KILL_OPTIONS
    store = manifest.with_suffix(".zarr")
    with xr.open_dataset(source) as ds:
        planned = streaming.prepare_job(
            ds,
            target,
            pipeline.make_config(factor=4, seed=9),
            options=streaming.StreamOptions(region_tiles=1, time_chunk=1, progress=False),
        )
    assert planned.store == store
    finished = [task for task in planned.tasks if (manifest / task.key).is_file()][:3]
    assert len(finished) == 3 and all(len((manifest / task.key).read_text()) == 64 for task in finished)
    array = zarr.open_array(str(store / "tas"), mode="r+", zarr_format=2)
    dims = json.loads((store / "tas" / ".zattrs").read_text())["_ARRAY_DIMENSIONS"]

    def chunk_file(task):
        region = store_region(task.region, task.leading, task.member, dims, 4, 0, 1)
        index = [
            region[dim].start // size if isinstance(region[dim], slice) else region[dim] // size
            for dim, size in zip(dims, array.chunks, strict=True)
        ]
        return store / "tas" / ".".join(map(str, index)), region

    altered, region = chunk_file(finished[0])
    selection = tuple(region[dim] for dim in dims)
    array[selection] = np.asarray(array[selection]) + 1.0
    chunk_file(finished[1])[0].unlink()
    truncated = chunk_file(finished[2])[0]
    truncated.write_bytes(truncated.read_bytes()[:10])
    rerun = climgen_cli("synthesize", source, target, *options)
    assert rerun.returncode == 0, rerun.stderr
    assert "3 finished task(s)" in rerun.stderr and "Traceback" not in rerun.stderr
    with xr.open_zarr(reference) as expected, xr.open_zarr(target) as got:
        np.testing.assert_array_equal(got["tas"].values, expected["tas"].values)


def test_a_device_or_scheduler_that_cannot_work_is_refused_in_one_line(tmp_path):
    import dask
    import torch

    ds = make_dataset("latlon", shape=(8, 8))
    config = pipeline.make_config(factor=2)
    if not torch.cuda.is_available():  # refused before any output is started
        with pytest.raises(ConfigError, match="sees no CUDA GPU"):
            streaming.run(ds, tmp_path / "out.nc", config, options=streaming.StreamOptions(device="cuda", progress=False))
        assert list(tmp_path.iterdir()) == []
    with pytest.raises(ConfigError, match="scheduler must be a dask scheduler's address"):
        streaming.run(ds, tmp_path / "out.nc", config, options=streaming.StreamOptions(scheduler="nonsense", progress=False))
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        with pytest.raises(ConfigError, match="cannot reach the dask scheduler at tcp://127.0.0.1:1"):
            streaming.run(
                ds, tmp_path / "out.nc", config, options=streaming.StreamOptions(scheduler="tcp://127.0.0.1:1", progress=False)
            )
    assert list(tmp_path.iterdir()) == []  # nothing was done: nothing is left to block another job
    other = pipeline.make_config(factor=2, seed=7)
    streaming.run(ds, tmp_path / "out.nc", other, options=streaming.StreamOptions(progress=False))
    assert (tmp_path / "out.nc").exists() and sorted(path.name for path in tmp_path.iterdir()) == ["out.nc"]


def test_a_client_of_ones_own_cluster_runs_the_job_as_its_address_does(tmp_path):
    """From Python, the ``distributed.Client`` of a cluster one started stands for its address."""
    from distributed import Client, LocalCluster

    ds = make_dataset("latlon", shape=(16, 16), times=2)
    config = pipeline.make_config(factor=2, seed=3)
    with pytest.raises(ConfigError, match="or a distributed.Client, got a int"):
        streaming.StreamOptions(scheduler=8786).validate()
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        with Client(cluster) as client:
            options = streaming.StreamOptions(scheduler=client, progress=False)
            assert options.validate().scheduler == client.scheduler.address
            streaming.run(ds, tmp_path / "out.zarr", config, options=options)
    expected = pipeline.synthesize(ds, factor=2, seed=3)
    with xr.open_zarr(tmp_path / "out.zarr") as got:
        np.testing.assert_array_equal(got["tas"].values, expected["tas"].values)


def test_progress_into_a_log_file_is_one_line_per_update(capsys, monkeypatch):
    """Where stderr is a file (a batch job's log), each update of a bar is a line of its own,
    not a carriage-return redraw that a log keeps as one endless line."""
    from climgen import progress

    monkeypatch.setattr(progress, "LOG_INTERVAL", 0.0)
    bar = progress.progress_bar(3, 0, "refining", "task")
    for _ in range(3):
        bar.update(1)
    bar.close()
    logged = capsys.readouterr().err
    assert "\r" not in logged and logged.endswith("\n")
    assert logged.splitlines()[-1].startswith("refining: 100%|") and "3/3" in logged.splitlines()[-1]


def _small_series(time_values, time_attrs, **variables) -> xr.Dataset:
    """Temperature on a 16 x 16 curvilinear grid (2-D lat and lon) over ``time_values``."""
    rng = np.random.default_rng(5)
    lat, lon = np.meshgrid(np.linspace(30, 45, 16), np.linspace(0, 15, 16), indexing="ij")
    tas = 280 + rng.normal(size=(len(time_values), 16, 16)).astype(np.float32)
    return xr.Dataset(
        {"tas": (("time", "y", "x"), tas, {"units": "K", "standard_name": "air_temperature"}), **variables},
        coords={
            "time": ("time", np.asarray(time_values, dtype=float), time_attrs),
            "lat": (("y", "x"), lat, {"units": "degrees_north", "standard_name": "latitude"}),
            "lon": (("y", "x"), lon + 0.01 * lat, {"units": "degrees_east", "standard_name": "longitude"}),
        },
    )


def test_outputs_keep_attribute_types_map_coordinates_and_undecoded_time_forms(tmp_path, climgen_cli):
    """Streamed NetCDF outputs widened every integer attribute to int64 (flag_values against an
    int8 flag failed the CF checks; CMIP's integer global attributes made the file unreadable
    to netCDF-3 tools) and lost the maps' link to 2-D latitude and longitude. A climatology whose
    bounds share time's units (CF 7.4) and a 360-day series in "months since" crashed the write."""
    import netCDF4

    middle = np.arange(15.0, 105.0, 30.0)
    climatology = _small_series(
        middle,
        {"units": "days since 1981-01-01", "calendar": "standard", "climatology": "climatology_bnds"},
        climatology_bnds=(("time", "nv"), np.stack([middle - 15, middle + 15 + 365 * 29], axis=1)),
        qc=(
            ("time",),
            np.array([0, 1, 2], "i1"),
            {"flag_values": np.array([0, 1, 2], "i1"), "flag_meanings": "good suspect bad"},
        ),
    )
    climatology.attrs |= {"realization": np.int32(1), "physics_version": np.int32(1)}
    climatology.to_netcdf(tmp_path / "climatology.nc", unlimited_dims=["time"])
    assert climgen_cli("synthesize", tmp_path / "climatology.nc", tmp_path / "out.nc", "--factor", "2").returncode == 0
    with netCDF4.Dataset(tmp_path / "out.nc") as out:
        assert out["qc"].getncattr("flag_values").dtype == np.int8
        assert isinstance(out.getncattr("realization"), np.int32)
        assert out.dimensions["time"].isunlimited()  # a record dimension, as the input's: ncrcat joins outputs
        assert all(out[name].getncattr("coordinates") == "lat lon" for name in ("complexity_score", "refinement_depth"))
        assert out.getncattr("time_coverage_start").startswith("1981-01-01")  # the climatology's years
        assert out.getncattr("time_coverage_end").startswith("2010-")
        np.testing.assert_array_equal(out["climatology_bnds"][:], climatology["climatology_bnds"].values)
    months = _small_series([0.0, 1.0, 2.0], {"units": "months since 2000-01-01", "calendar": "360_day"})
    months.to_netcdf(tmp_path / "months.nc")
    assert climgen_cli("synthesize", tmp_path / "months.nc", tmp_path / "months-x2.nc", "--factor", "2").returncode == 0
    with xr.open_dataset(tmp_path / "months.nc") as source, xr.open_dataset(tmp_path / "months-x2.nc") as out:
        assert list(out["time"].values) == list(source["time"].values)
        source.climgen.synthesize(factor=2).to_netcdf(tmp_path / "in-memory.nc")  # written as the user would
    with xr.open_dataset(tmp_path / "climatology.nc") as source:
        source.climgen.synthesize(factor=2).to_netcdf(tmp_path / "climatology-in-memory.nc")
    with netCDF4.Dataset(tmp_path / "climatology-in-memory.nc") as out:
        assert out.dimensions["time"].isunlimited()


def test_an_interruption_while_the_netcdf_is_written_leaves_no_half_file_and_says_what_is_kept(tmp_path, monkeypatch):
    """Ctrl-C after every task, while the NetCDF was written from the store, left a half-written
    file beside it and said "nothing to resume"."""
    from climgen.leftovers import interruption_note

    make_dataset("latlon", shape=(16, 16)).to_netcdf(tmp_path / "in.nc")
    config, options = pipeline.make_config(factor=2), streaming.StreamOptions(progress=False)
    original = xr.Dataset.to_netcdf

    def cut_short(self, path, *args, **kwargs):
        original(self, path, *args, **kwargs)  # the file is there, as a conversion cut short leaves it
        raise KeyboardInterrupt

    output = tmp_path / "out.nc"
    with xr.open_dataset(tmp_path / "in.nc") as ds:
        monkeypatch.setattr(xr.Dataset, "to_netcdf", cut_short)
        with pytest.raises(KeyboardInterrupt):
            streaming.run(ds, output, config, options=options)
        monkeypatch.setattr(xr.Dataset, "to_netcdf", original)
        left = sorted(path.name for path in tmp_path.iterdir() if path.name.startswith(".out.nc"))
        assert len(left) == 1 and left[0].endswith(".zarr"), left  # the complete store, no partial .nc
        assert "interrupted while writing out.nc: every task finished" in interruption_note(output)
        streaming.run(ds, output, config, options=options)  # the rerun writes the output from the store
    with xr.open_dataset(output) as out:
        assert out["tas"].shape[-2:] == (32, 32)
    assert not [path for path in tmp_path.iterdir() if path.name.startswith(".out.nc")]

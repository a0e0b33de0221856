"""Temporary outputs of killed in-memory writes are cleaned up; those of live runs are kept.

(The kill -9 and resume test of the streaming path is in test_streaming.py.)
"""

import os

from climgen.io.write import remove_stale_partials


def test_partials_of_live_processes_are_kept(tmp_path):
    target = tmp_path / "out.nc"
    mine = tmp_path / f".out.nc.partial-{os.getpid()}-abcd1234"
    dead = tmp_path / ".out.nc.partial-999999999-abcd1234"
    mine.write_text("in progress")
    dead.write_text("left by a killed run")
    assert remove_stale_partials(target) == [dead]
    assert mine.exists() and not dead.exists()


# --- one writer per output: real processes on one output ----------------------------------

import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import xarray as xr  # noqa: E402

from climgen.errors import ConfigError, OutputLockedError  # noqa: E402
from climgen.io.lock import OutputLock, StaleLockWarning, lock_path  # noqa: E402

HOLD = """
import sys, time
from climgen.io.lock import OutputLock
lock = OutputLock(sys.argv[1]).acquire()
print("held", flush=True)
sys.stdin.read()  # until the test closes our stdin (or kills us)
lock.release()
"""


def _climgen(*arguments):
    return [sys.executable, "-m", "climgen.cli", *map(str, arguments)]


@pytest.fixture
def holder(tmp_path):
    """A separate process holding the lock of tmp_path/out.nc."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path / "out.nc")], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert process.stdout.readline().strip() == "held"
    yield process
    if process.poll() is None:
        process.kill()
        process.wait()


def test_a_second_run_on_an_output_being_written_stops_in_one_line(hsurf_coarse_file, tmp_path, holder, climgen_cli):
    output = tmp_path / "out.nc"
    result = climgen_cli("synthesize", hsurf_coarse_file, output, "--quiet")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    line = result.stderr.strip()
    assert "\n" not in line and "another climgen process is writing" in line
    assert f"pid {holder.pid}" in line and "since 20" in line and "--wait" in line
    assert not output.exists()


def test_with_wait_a_second_run_waits_then_takes_over_a_lock_its_holder_left(hsurf_coarse_file, tmp_path, holder, climgen_cli):
    """The holder is killed (its lock file stays): the waiting run takes the lock over with a
    warning and writes the same bytes as an undisturbed run."""
    output = tmp_path / "out.nc"
    waiting = subprocess.Popen(
        _climgen("synthesize", hsurf_coarse_file, output, "--quiet", "--wait"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(3)
    assert waiting.poll() is None, "it waits while the other process holds the lock"
    holder.kill()
    holder.wait()
    assert json.loads(lock_path(output).read_text())["pid"] == holder.pid  # the killed holder's file is left
    _, stderr = waiting.communicate(timeout=240)
    assert waiting.returncode == 0, stderr
    assert "taking over the lock" in stderr and "Traceback" not in stderr
    assert not lock_path(output).exists()
    reference = tmp_path / "reference.nc"
    assert climgen_cli("synthesize", hsurf_coarse_file, reference, "--quiet").returncode == 0
    with xr.open_dataset(output) as first, xr.open_dataset(reference) as second:
        np.testing.assert_array_equal(first["HSURF"].values, second["HSURF"].values)


def test_two_runs_started_together_write_one_output(hsurf_coarse_file, tmp_path, climgen_cli):
    """A job array with a duplicated line: one run writes, the other stops in one line (or,
    if it comes after, finds the output done); never a traceback, and the output is right."""
    output = tmp_path / "out.nc"
    runs = [
        subprocess.Popen(
            _climgen("synthesize", hsurf_coarse_file, output, "--quiet"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    results = [(run.wait(timeout=240), *run.communicate()) for run in runs]
    assert all("Traceback" not in stderr for _, _, stderr in results)
    assert sum(code == 0 for code, _, _ in results) >= 1
    for code, _, stderr in results:
        assert code == 0 or "another climgen process is writing" in stderr
    reference = tmp_path / "reference.nc"
    assert climgen_cli("synthesize", hsurf_coarse_file, reference, "--quiet").returncode == 0
    with xr.open_dataset(output) as first, xr.open_dataset(reference) as second:
        np.testing.assert_array_equal(first["HSURF"].values, second["HSURF"].values)


def test_lock_in_process_and_a_folder_that_cannot_be_written(tmp_path, monkeypatch):
    output = tmp_path / "out.zarr"
    with OutputLock(output):
        with pytest.raises(OutputLockedError, match="another climgen process"):
            OutputLock(output).acquire()
    assert not lock_path(output).exists()
    lock_path(output).write_text(json.dumps({"host": "elsewhere", "pid": 999999999, "since": "2026-01-01T00:00:00Z"}))
    with pytest.warns(StaleLockWarning, match="pid 999999999"), OutputLock(output):
        pass
    with pytest.raises(ConfigError, match="does not exist"):
        OutputLock(tmp_path / "missing" / "out.nc").acquire()

    def read_only(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("climgen.io.lock.os.open", read_only)  # a read-only folder, as root cannot make one
    with pytest.raises(ConfigError, match="cannot write in .*Permission denied"):
        OutputLock(output).acquire()


# --- a full disk: a clear error, nothing at the final path, and the rerun resumes -----------

import errno  # noqa: E402
import shutil  # noqa: E402

from climgen import pipeline, streaming, tasks  # noqa: E402
from climgen.errors import OutputWriteError  # noqa: E402
from climgen.testing import make_dataset  # noqa: E402


def _tiny_filesystem(folder, size: str) -> bool:
    """Mount a tmpfs of ``size`` at ``folder`` (root only); False where that is not allowed."""
    if shutil.which("mount") is None or os.geteuid() != 0:
        return False
    folder.mkdir(exist_ok=True)
    return (
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True).returncode == 0
    )


def test_a_full_disk_stops_in_one_line_and_the_rerun_after_freeing_space_matches(tmp_path, climgen_cli):
    source = tmp_path / "in.nc"
    make_dataset("latlon", shape=(64, 64), times=24, seed=2).to_netcdf(source)
    options = ["--factor", "4", "--region-tiles", "1", "--time-chunk", "1", "--quiet"]
    reference = tmp_path / "reference.zarr"
    assert climgen_cli("synthesize", source, reference, *options).returncode == 0
    disk = tmp_path / "disk"
    if not _tiny_filesystem(disk, "2m"):
        pytest.skip("cannot mount a size-limited tmpfs here (needs root)")
    try:
        output = disk / "out.zarr"
        full = climgen_cli("synthesize", source, output, *options)
        assert full.returncode != 0 and "Traceback" not in full.stderr
        assert "No space left on device" in full.stderr and "rerun the same command to resume" in full.stderr
        assert len(full.stderr.strip().splitlines()) == 1
        assert not output.exists() and list(disk.glob(".out.zarr.partial-job-*.zarr"))
        assert subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], capture_output=True).returncode == 0
        rerun = climgen_cli("synthesize", source, output, *options)
        assert rerun.returncode == 0, rerun.stderr
        with xr.open_zarr(reference) as expected, xr.open_zarr(output) as got:
            np.testing.assert_array_equal(got["tas"].values, expected["tas"].values)
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)


def test_a_disk_that_fills_while_the_netcdf_is_written_stops_in_one_line_and_keeps_the_tasks(tmp_path, climgen_cli):
    """The finished store fits, the NetCDF made from it does not: netCDF4 says only "HDF
    error" once its file is large; the user gets the one-line full-disk error, and the
    half-written file is removed."""
    source = tmp_path / "in.nc"
    make_dataset("latlon", shape=(32, 32), times=1000, seed=2).to_netcdf(source)
    options = ["--factor", "4", "--time-chunk", "50", "--quiet"]
    assert climgen_cli("synthesize", source, tmp_path / "reference.zarr", *options).returncode == 0
    assert climgen_cli("synthesize", source, tmp_path / "reference.nc", *options).returncode == 0
    store = sum(path.stat().st_size for path in (tmp_path / "reference.zarr").rglob("*") if path.is_file())
    netcdf = (tmp_path / "reference.nc").stat().st_size
    disk = tmp_path / "disk"
    if not _tiny_filesystem(disk, str(store + netcdf // 2 + 2**20)):
        pytest.skip("cannot mount a size-limited tmpfs here (needs root)")
    try:
        full = climgen_cli("synthesize", source, disk / "out.nc", *options)
        assert full.returncode != 0 and "Traceback" not in full.stderr, full.stderr
        assert "No space left on device" in full.stderr and "rerun the same command to resume" in full.stderr
        assert not (disk / "out.nc").exists() and not list(disk.glob(".out.nc.partial-job-*.nc"))
        assert list(disk.glob(".out.nc.partial-job-*.zarr"))  # the finished tasks
        # the half-written file's space is free again in this process too (emptied before it was removed)
        assert shutil.disk_usage(disk).free > netcdf // 4
    finally:
        subprocess.run(["umount", "--lazy", str(disk)], capture_output=True)  # the failed write's handle stays open


def test_an_injected_write_error_keeps_the_job_resumable(tmp_path, monkeypatch):
    """The same on any machine: the disk fills after a few tasks (an injected ENOSPC on the real
    code path); the error is an OutputWriteError and the rerun gives the undisturbed bits."""
    ds = make_dataset("latlon", shape=(48, 48), times=4, seed=3)
    config = pipeline.make_config(factor=4, seed=1)
    options = streaming.StreamOptions(region_tiles=1, time_chunk=1, progress=False)
    streaming.run(ds, tmp_path / "reference.zarr", config, options=options)
    written = []
    original = tasks.record_task

    def fill_up(manifest, key, digest):
        if len(written) >= 5:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        written.append(key)
        original(manifest, key, digest)

    monkeypatch.setattr(tasks, "record_task", fill_up)
    output = tmp_path / "out.nc"
    with pytest.raises(OutputWriteError, match="No space left on device while writing .*rerun the same command"):
        streaming.run(ds, output, config, options=options)
    assert not output.exists()
    monkeypatch.setattr(tasks, "record_task", original)
    streaming.run(ds, output, config, options=options)
    with xr.open_zarr(tmp_path / "reference.zarr") as expected, xr.open_dataset(output) as got:
        np.testing.assert_array_equal(got["tas"].values, expected["tas"].values)


# --- a dead worker: dask reschedules its tasks, and the output has the same bits ------------

import signal  # noqa: E402


def test_a_worker_killed_mid_job_costs_nothing_but_time(tmp_path, climgen_cli):
    """A 2-worker local cluster; one worker process is SIGKILLed once some tasks are done.
    The nanny starts a new worker, dask runs the lost tasks again, the job completes, and its
    output is bit-identical to an undisturbed run."""
    psutil = pytest.importorskip("psutil")
    source = tmp_path / "in.nc"
    make_dataset("latlon", shape=(48, 48), times=8, seed=4).to_netcdf(source)
    options = ["--factor", "4", "--seed", "2", "--region-tiles", "1", "--time-chunk", "1", "--quiet"]
    reference = tmp_path / "reference.zarr"
    assert climgen_cli("synthesize", source, reference, *options).returncode == 0
    output = tmp_path / "out.zarr"
    job = subprocess.Popen(
        _climgen("synthesize", source, output, *options, "--workers", "2"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline, killed = time.monotonic() + 240, None
    while time.monotonic() < deadline and job.poll() is None and killed is None:
        time.sleep(0.1)
        finished = [path for folder in tmp_path.glob(".out.zarr.partial-job-*.manifest") for path in folder.iterdir()]
        try:
            workers = [
                child for child in psutil.Process(job.pid).children(recursive=True) if "spawn" in " ".join(child.cmdline())
            ]
        except psutil.Error:  # a child ended while we looked
            continue
        if len(finished) >= 4 and workers:
            killed = workers[0].pid
            os.kill(killed, signal.SIGKILL)
    assert killed is not None, "the job finished before a worker could be killed: use a larger input"
    _, stderr = job.communicate(timeout=300)
    assert job.returncode == 0, stderr
    assert "Traceback" not in stderr
    with xr.open_zarr(reference) as expected, xr.open_zarr(output) as got:
        np.testing.assert_array_equal(got["tas"].values, expected["tas"].values)


WORKER_LOGS_AN_EXCEPTION = """
import logging
from types import SimpleNamespace
from climgen.workers import attach_client

def lose_a_transfer():
    try:
        raise ConnectionResetError(104, "Connection reset by peer")
    except OSError:
        logging.getLogger("distributed.worker").exception("failed during get data with %s", "a peer")

with attach_client(SimpleNamespace(scheduler=None, workers=1), "default") as client:
    client.run(lose_a_transfer)
"""


def test_a_worker_logs_a_lost_transfer_in_one_line_without_a_traceback():
    """What a surviving worker logs when a killed peer drops a transfer (dask runs the lost tasks
    again): one line naming the error, not a traceback that reads as climgen failing."""
    done = subprocess.run([sys.executable, "-c", WORKER_LOGS_AN_EXCEPTION], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "failed during get data with a peer (ConnectionResetError: [Errno 104] Connection reset by peer)" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_read_only_output_folder_is_a_clear_error_before_any_work(tmp_path, hsurf_coarse_file):
    """A read-only filesystem (a real one: a tmpfs mounted ro, where root may mount it)."""
    folder = tmp_path / "read-only"
    if not _tiny_filesystem(folder, "1m"):
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        assert subprocess.run(["mount", "-o", "remount,ro", str(folder)], capture_output=True).returncode == 0
        result = subprocess.run(
            _climgen("synthesize", hsurf_coarse_file, folder / "out.nc", "--quiet"), capture_output=True, text=True
        )
        assert result.returncode != 0 and "Traceback" not in result.stderr
        assert "cannot write in" in result.stderr and "Read-only file system" in result.stderr
        # the other commands that write: coarsen, evaluate's and demo's folders (tracebacks before)
        for command in (
            ["coarsen", hsurf_coarse_file, folder / "coarse.nc", "--factor", "2"],
            ["evaluate", "--truth", hsurf_coarse_file, "--pred", hsurf_coarse_file, "--out", folder],
            ["demo", "--out", folder],
        ):
            result = subprocess.run(_climgen(*command), capture_output=True, text=True)
            assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
            assert "Read-only file system" in result.stderr, result.stderr
        assert not list(folder.iterdir())
    finally:
        subprocess.run(["umount", str(folder)], capture_output=True)

"""A real job killed with SIGKILL leaves nothing at the final path; the rerun is identical."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import xarray as xr

from climgen.io.write import remove_stale_partials
from climgen.testing import make_dataset


def _command(source, target):
    return [sys.executable, "-m", "climgen.cli", "synthesize", str(source), str(target), "--factor", "4", "--seed", "9"]


def test_kill_9_then_rerun_matches_an_uninterrupted_run(tmp_path):
    source = tmp_path / "in.nc"
    make_dataset("latlon", shape=(64, 64), times=24).to_netcdf(source)
    reference = tmp_path / "reference.nc"
    assert subprocess.run(_command(source, reference), capture_output=True, timeout=600).returncode == 0

    target = tmp_path / "killed.nc"
    job = subprocess.Popen(_command(source, target), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(3.0)
    os.kill(job.pid, signal.SIGKILL)
    job.wait(timeout=60)
    assert job.returncode == -signal.SIGKILL, "the job finished before it could be killed: use a larger input"
    assert not target.exists(), "a killed job must not leave a file at the final path"

    rerun = subprocess.run(_command(source, target), capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    assert not list(tmp_path.glob(".killed.nc.partial-*")), "stale partial output was not cleaned up"
    with xr.open_dataset(reference) as expected, xr.open_dataset(target) as got:
        for name in ("tas", "complexity_score", "refinement_depth"):
            np.testing.assert_array_equal(got[name].values, expected[name].values)


def test_partials_of_live_processes_are_kept(tmp_path):
    target = tmp_path / "out.nc"
    mine = tmp_path / f".out.nc.partial-{os.getpid()}-abcd1234"
    dead = tmp_path / ".out.nc.partial-999999999-abcd1234"
    mine.write_text("in progress")
    dead.write_text("left by a killed run")
    assert remove_stale_partials(target) == [dead]
    assert mine.exists() and not dead.exists()

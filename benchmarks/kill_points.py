"""Random kill points on a 2-worker streamed job: does every output come out whole and the same?

Each trial starts ``climgen synthesize --workers 2`` on the same input and, at a random moment,
SIGKILLs either the main process with its workers (a batch allocation ending) or one of the
two worker processes (chosen at random, seeded). A killed main process is followed by the same command again (and again, if the
kill came before anything was written), as a user or a batch system would rerun it; a killed
worker is left to dask and the nanny. Every trial's output is compared with an undisturbed
run, region by region.

    python benchmarks/kill_points.py [--trials 20] [--seed 0] [--size 48] [--times 8]

Prints one row per trial and a summary: completed runs, tiles lost, identical outputs.
"""

from __future__ import annotations

import argparse
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import xarray as xr

from climgen.testing import make_dataset

OPTIONS = ["--factor", "4", "--seed", "2", "--region-tiles", "1", "--time-chunk", "1", "--quiet"]
TILE = 16  # coarse cells a tile side of the 48 x 48 input (the layout's tile size there)


def climgen(*arguments) -> list[str]:
    return [sys.executable, "-m", "climgen.cli", *map(str, arguments)]


def workers_of(process: subprocess.Popen) -> list[psutil.Process]:
    """The worker processes a job's local cluster spawned."""
    try:
        children = psutil.Process(process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    workers = []
    for child in children:
        try:
            if "spawn" in " ".join(child.cmdline()):
                workers.append(child)
        except psutil.Error:  # it ended (or changed) while we looked
            pass
    return workers


def trial(source: Path, output: Path, rng: random.Random, longest: float) -> dict:
    """One job killed once at a random moment, then rerun to completion if its main process died."""
    target = rng.choice(["main", "worker"])
    moment = rng.uniform(0.3, 0.75 * longest)  # well within an undisturbed run, so every trial is killed
    job = subprocess.Popen(
        climgen("synthesize", source, output, *OPTIONS, "--workers", 2), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    started = time.monotonic()
    killed = None
    while job.poll() is None and killed is None:
        time.sleep(0.05)
        if time.monotonic() - started < moment:
            continue
        if target == "main":  # the whole job goes, as when a batch allocation ends: its workers too
            workers = workers_of(job)
            job.send_signal(signal.SIGKILL)
            for worker in workers:
                try:
                    worker.kill()
                except psutil.NoSuchProcess:
                    pass
            killed = "main"
        elif workers := workers_of(job):
            try:
                rng.choice(workers).kill()
                killed = "worker"
            except psutil.NoSuchProcess:  # it ended just now: try another moment's worker
                pass
    _, stderr = job.communicate(timeout=600)
    reruns = 0
    while job.returncode != 0 and reruns < 3:
        again = subprocess.run(climgen("synthesize", source, output, *OPTIONS, "--workers", 2), capture_output=True, text=True)
        job.returncode, reruns = again.returncode, reruns + 1
    return {
        "killed": killed or "none (finished first)",
        "at_s": round(moment, 2),
        "reruns": reruns,
        "completed": job.returncode == 0,
    }


def lost_tiles(output: Path, reference: Path) -> int:
    """Tiles (per time step) whose refined values differ from the undisturbed run's."""
    if not output.exists():
        return -1
    with xr.open_zarr(output) as got, xr.open_zarr(reference) as expected:
        difference = ~np.isclose(got["tas"].values, expected["tas"].values, rtol=0, atol=0, equal_nan=True)
    side = TILE * 4
    steps, ny, nx = difference.shape
    blocks = difference[:, : ny // side * side, : nx // side * side].reshape(steps, ny // side, side, nx // side, side)
    return int(blocks.any(axis=(2, 4)).sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=48)
    parser.add_argument("--times", type=int, default=8)
    arguments = parser.parse_args()
    rng = random.Random(arguments.seed)
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        source = folder / "in.nc"
        make_dataset("latlon", shape=(arguments.size, arguments.size), times=arguments.times, seed=4).to_netcdf(source)
        reference = folder / "reference.zarr"
        started = time.monotonic()
        subprocess.run(climgen("synthesize", source, reference, *OPTIONS, "--workers", 2), check=True, capture_output=True)
        longest = time.monotonic() - started  # kill within the length of an undisturbed run
        print(f"undisturbed run: {longest:.1f} s\n")
        print("| trial | killed | at s | reruns | completed | tiles lost | identical |")
        print("|---|---|---|---|---|---|---|")
        rows = []
        for index in range(arguments.trials):
            output = folder / f"out-{index}.zarr"
            row = trial(source, output, rng, longest)
            row["lost"] = lost_tiles(output, reference)
            row["identical"] = row["lost"] == 0
            rows.append(row)
            print(
                f"| {index + 1} | {row['killed']} | {row['at_s']} | {row['reruns']} | {row['completed']} | {row['lost']} | {row['identical']} |",
                flush=True,
            )
    completed = sum(row["completed"] for row in rows)
    lost = sum(max(row["lost"], 0) for row in rows)
    identical = sum(row["identical"] for row in rows)
    print(f"\ncompleted runs {completed}/{len(rows)}, tiles lost {lost}, identical outputs {identical}/{len(rows)}")


if __name__ == "__main__":
    main()

"""Streaming a large domain: wall time, output megapixels per second and peak memory.

Writes a synthetic coarse field (``climgen.testing.make_dataset``: smooth west, rough east) of
SIZE x SIZE cells, then runs ``climgen synthesize IN OUT.zarr --factor F --quiet`` as a
subprocess for each way of running it (local threads, a local cluster of N workers) and
samples the resident memory of the whole process tree (client and workers) every 0.2 s.
Prints a markdown table; ``--json`` saves the rows.

    python benchmarks/streaming_scale.py [--size 1536] [--factors 2 4 8] [--times 1]
        [--runs threads workers=1 workers=2] [--region-tiles 4] [--json out.json]

The issue's target: 1536^2 -> 6144^2 (x4) with peak RSS <= 4 GiB on 2 cores / 24 GiB.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from climgen.testing import make_dataset


def tree_rss(process: psutil.Process) -> int:
    """Resident bytes of a process and all its descendants (0 for those already gone)."""
    total = 0
    for member in [process, *process.children(recursive=True)]:
        try:
            total += member.memory_info().rss
        except psutil.Error:
            pass
    return total


def run_once(command: list[str]) -> tuple[float, int, int]:
    """Wall seconds, peak tree RSS and return code of one command."""
    started = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    watched = psutil.Process(child.pid)
    peak = 0
    while child.poll() is None:
        try:
            peak = max(peak, tree_rss(watched))
        except psutil.Error:
            pass
        time.sleep(0.2)
    seconds = time.perf_counter() - started
    if child.returncode:
        sys.stderr.write(child.stderr.read().decode())
    return seconds, peak, child.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1536)
    parser.add_argument("--factors", type=int, nargs="+", default=[4])
    parser.add_argument("--times", type=int, default=0, help="time steps (0: a 2-D field)")
    parser.add_argument("--runs", nargs="+", default=["threads", "workers=1", "workers=2"])
    parser.add_argument("--region-tiles", type=int, default=4)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="climgen-scale-"))
    source = folder / "coarse.nc"
    make_dataset("latlon", shape=(args.size, args.size), times=args.times, seed=11).to_netcdf(source)
    rows = []
    try:
        for factor in args.factors:
            fine_pixels = args.size**2 * factor**2 * max(1, args.times)
            for run in args.runs:
                output = folder / f"fine-{run.replace('=', '')}-x{factor}.zarr"
                command = [sys.executable, "-m", "climgen.cli", "synthesize", str(source), str(output)]
                command += ["--factor", str(factor), "--region-tiles", str(args.region_tiles), "--quiet"]
                if run.startswith("workers="):
                    command += ["--workers", run.split("=")[1]]
                seconds, peak, code = run_once(command)
                rows.append(
                    {
                        "run": run,
                        "factor": factor,
                        "input": f"{args.size}^2 x {max(1, args.times)}",
                        "output": f"{args.size * factor}^2",
                        "seconds": round(seconds, 1),
                        "out_mpix_per_s": round(fine_pixels / seconds / 1e6, 3),
                        "peak_rss_gib": round(peak / 2**30, 2),
                        "ok": code == 0,
                    }
                )
                shutil.rmtree(output, ignore_errors=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    cores = os.cpu_count()
    print(f"\nclimgen streaming, {cores} cores, CPU only\n")
    print("| run | factor | input | output | wall s | out MPix/s | peak RSS GiB (all processes) | ok |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['run']} | x{row['factor']} | {row['input']} | {row['output']} | {row['seconds']} | "
            f"{row['out_mpix_per_s']} | {row['peak_rss_gib']} | {row['ok']} |"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()

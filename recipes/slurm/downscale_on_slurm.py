"""Run a climgen batch recipe on a SLURM cluster through dask-jobqueue.

Each SLURM job is one dask worker (CPU here; for GPU nodes use dask-cuda's
``dask_cuda.LocalCUDACluster`` inside the allocation instead, one worker per GPU). climgen
attaches to the scheduler, registers a worker plugin that loads the model once per worker,
and streams results to the recipe's output; if the allocation ends early, submit the same
command again: finished regions are skipped.

    pip install dask-jobqueue
    python recipes/slurm/downscale_on_slurm.py recipes/downscale-africa-tas-x4.yaml --jobs 8

Not exercised in CI (no SLURM there); the same code path (``--scheduler``) is tested against
a local dask cluster.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

from dask_jobqueue import SLURMCluster


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe")
    parser.add_argument("--jobs", type=int, default=4, help="SLURM jobs (one dask worker each)")
    parser.add_argument("--queue", default=None, help="SLURM partition")
    parser.add_argument("--account", default=None)
    parser.add_argument("--walltime", default="02:00:00")
    args = parser.parse_args()

    cluster = SLURMCluster(
        cores=4,  # dask threads per worker: climgen runs one torch thread per task
        processes=1,
        memory="16GB",
        walltime=args.walltime,
        queue=args.queue,
        account=args.account,
        job_extra_directives=["--exclusive"] if args.jobs > 16 else [],
    )
    cluster.scale(jobs=args.jobs)
    try:
        command = ["climgen", "run", args.recipe, "--scheduler", cluster.scheduler_address]
        sys.exit(subprocess.run(command).returncode)
    finally:
        cluster.close()


if __name__ == "__main__":
    main()

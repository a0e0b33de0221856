"""Dask workers that load the model once: a worker plugin and the client that registers it.

Importing this module needs ``distributed``; :mod:`climgen.streaming` imports it only when a
job runs on a cluster (``workers`` or ``scheduler`` given).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import dask
from dask.system import CPU_COUNT
from distributed import Client, LocalCluster, WorkerPlugin


class ModelLoader(WorkerPlugin):
    """Loads the checkpoint on each worker at start-up (tasks then find it in the process cache)
    and runs torch on one thread per task (the worker's threads run tasks in parallel), so the
    numbers do not depend on how many workers or threads there are."""

    name = "climgen-model"

    def __init__(self, model: str):
        self.model = model

    def setup(self, worker) -> None:
        import torch

        from climgen.allocator import retain_freed_memory
        from climgen.models.checkpoint import load_checkpoint

        # the nanny's MALLOC_TRIM_THRESHOLD_ is dask's default, not the user's: override it
        retain_freed_memory(respect_environment=False)
        torch.set_num_threads(1)
        load_checkpoint(self.model)


@contextmanager
def attach_client(options, model: str) -> Iterator[Client]:
    """A client on ``options.scheduler``, or on a new local cluster of ``options.workers``
    worker processes sharing out the cores as threads."""
    if options.scheduler:
        with Client(options.scheduler) as client:
            client.register_plugin(ModelLoader(model))
            yield client
        return
    threads = max(1, CPU_COUNT // options.workers)  # the cores this process may use
    # dask's nanny sets MALLOC_TRIM_THRESHOLD_=65536 in workers, which returns every freed
    # tile buffer to the OS and makes refinement about 1.6 times slower: keep glibc's default
    # (ModelLoader then raises the thresholds, see climgen.allocator)
    with (
        dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}),
        LocalCluster(n_workers=options.workers, threads_per_worker=threads, processes=True, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        client.register_plugin(ModelLoader(model))
        yield client

"""Dask workers that load the model once: a worker plugin and the client that registers it.

Importing this module needs ``distributed``; :mod:`climgen.streaming` imports it only when a
job runs on a cluster (``workers`` or ``scheduler`` given).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import dask
from dask.system import CPU_COUNT
from distributed import Client, LocalCluster, WorkerPlugin

from climgen.errors import ClimgenError, ConfigError
from climgen.tasks import SPREAD_GPUS


class ModelLoader(WorkerPlugin):
    """Loads the checkpoint on each worker at start-up (tasks then find it in the process cache)
    and runs torch on one thread per task (the worker's threads run tasks in parallel), so the
    numbers do not depend on how many workers or threads there are."""

    name = "climgen-model"

    def __init__(self, model: str, one_line_errors: bool = False):
        self.model = model
        self.one_line_errors = one_line_errors

    def setup(self, worker) -> None:
        import torch

        if self.one_line_errors:
            log_errors_in_one_line()

        from climgen.allocator import retain_freed_memory
        from climgen.models.checkpoint import load_checkpoint

        # the nanny's MALLOC_TRIM_THRESHOLD_ is dask's default, not the user's: override it
        retain_freed_memory(respect_environment=False)
        torch.set_num_threads(1)
        load_checkpoint(self.model)


class OneLineErrors(logging.Filter):
    """Writes a logged exception as one line. A worker whose peer was killed logs the lost
    transfer with its traceback, though dask runs the lost tasks again: on the command line that
    traceback reads as climgen failing."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            detail = str(error).splitlines()[0] if str(error) else ""
            record.msg = f"{record.getMessage()} ({type(error).__name__}: {detail})"
            record.args = None
            record.exc_info = record.exc_text = record.stack_info = None
        return True


def log_errors_in_one_line() -> None:
    """Add :class:`OneLineErrors` to the handlers of distributed's logger and the root logger in
    this process (once)."""
    for handler in logging.getLogger("distributed").handlers + logging.getLogger().handlers:
        if not any(isinstance(existing, OneLineErrors) for existing in handler.filters):
            handler.addFilter(OneLineErrors())


STARTS = 3  # attempts at starting a local cluster whose workers die while starting


@contextmanager
def attach_client(options, model: str) -> Iterator[Client]:
    """A client on ``options.scheduler``, or on a new local cluster of ``options.workers``
    worker processes sharing out the cores as threads."""
    if options.scheduler:
        try:
            client = Client(options.scheduler)
        except (OSError, TimeoutError) as err:  # unreachable: one line, as every other refusal
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise ConfigError(f"cannot reach the dask scheduler at {options.scheduler}: {reason}") from None
        with client:
            client.register_plugin(ModelLoader(model))
            yield client
        return
    threads = max(1, CPU_COUNT // options.workers)  # the cores this process may use
    with ExitStack() as stack:
        stack.enter_context(_started_cluster(options.workers, threads, model, stack))
        yield stack.client


@contextmanager
def _started_cluster(workers: int, threads: int, model: str, owner: ExitStack) -> Iterator[None]:
    """Start a local cluster of ``workers`` processes and a client with the model loader,
    attached to ``owner`` as ``owner.client``. A worker that dies while this starts (killed, out
    of memory) makes climgen start again, up to :data:`STARTS` times."""
    for attempt in range(1, STARTS + 1):
        setup = ExitStack()
        try:
            # dask's nanny sets MALLOC_TRIM_THRESHOLD_=65536 in workers, which returns every freed
            # tile buffer to the OS and makes refinement about 1.6 times slower: keep glibc's
            # default (ModelLoader then raises the thresholds, see climgen.allocator)
            setup.enter_context(dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}))
            cluster = setup.enter_context(
                # distributed's own warnings of a worker lost mid-job (climgen runs its tasks again)
                # are noise on the command line, and one of them can fail to format (a logging
                # traceback on stderr): show its errors only, each in one line (OneLineErrors)
                LocalCluster(
                    n_workers=workers,
                    threads_per_worker=threads,
                    processes=True,
                    dashboard_address=None,
                    silence_logs=logging.ERROR,
                    env={SPREAD_GPUS: "1"},  # a machine's GPUs shared out among the workers
                )
            )
            client = setup.enter_context(Client(cluster))
            client.register_plugin(ModelLoader(model, one_line_errors=True))
        except Exception as error:  # noqa: BLE001 - distributed fails in many ways when a worker dies early
            setup.close()
            if attempt == STARTS:
                raise ClimgenError(
                    f"the local dask cluster of {workers} workers failed to start {STARTS} times "
                    f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}); rerun the same command"
                ) from None
            continue
        owner.client = client
        with setup:
            yield
        return

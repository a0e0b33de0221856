"""The options of a streamed job (:mod:`climgen.streaming`): how it is cut into tasks and
where they run."""

from __future__ import annotations

from dataclasses import dataclass, replace

from climgen._torch import check_device, check_device_name
from climgen.errors import ConfigError


@dataclass(frozen=True)
class StreamOptions:
    """How a job is cut into tasks and where they run (not part of the numbers it produces)."""

    region_tiles: int = 4
    time_chunk: int = 8
    workers: int | None = None
    scheduler: str | None = None  # a dask scheduler's address (or a distributed.Client)
    progress: bool = True
    device: str = "auto"  # where tasks run the model: cpu, cuda, or auto (cuda when the worker has one)
    wait: bool = False  # wait for another climgen process writing the same output, instead of stopping

    def validate(self) -> StreamOptions:
        """The options checked, a dask ``Client`` given as ``scheduler`` taken as its address."""
        address = getattr(getattr(self.scheduler, "scheduler", None), "address", None)
        if address is not None:  # distributed.Client: its scheduler's address
            return replace(self, scheduler=address).validate()
        if self.scheduler is not None and not isinstance(self.scheduler, str):
            raise ConfigError(
                f"scheduler must be a dask scheduler's address (tcp://HOST:8786) or a distributed.Client, "
                f"got a {type(self.scheduler).__name__}"
            )
        check_device_name(self.device)
        if self.region_tiles < 1 or self.time_chunk < 1:
            raise ConfigError(f"region_tiles and time_chunk must be >= 1, got {self.region_tiles}, {self.time_chunk}")
        if self.workers is not None and self.workers < 1:
            raise ConfigError(f"workers must be >= 1, got {self.workers}")
        if self.workers and self.scheduler:
            raise ConfigError("give either workers (start a local cluster) or scheduler (attach to one), not both")
        if self.device.startswith("cuda") and not self.scheduler:  # a remote cluster's workers may have GPUs this machine lacks
            check_device(self.device)
        if self.scheduler:
            check_scheduler_address(self.scheduler)
        return self


def check_scheduler_address(address: str) -> None:
    """A clear error for a scheduler address dask cannot parse (before any work)."""
    from distributed.comm.addressing import parse_address, parse_host_port

    try:
        scheme, location = parse_address(address)
        if scheme in ("tcp", "tls"):
            parse_host_port(location)
    except ValueError as err:
        raise ConfigError(
            f"scheduler must be a dask scheduler's address such as tcp://HOST:8786, got {address!r} ({err})"
        ) from None

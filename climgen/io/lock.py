"""One writer per output: a lock beside it, held for as long as a climgen process writes it.

A resubmitted batch job or a duplicated line of a job array starts two runs on one output;
without a lock both would build the same partial store. The lock is ``.NAME.climgen-lock``
beside the output, created atomically, holding the writer's host, pid and start time, and
held with an ``flock`` lock for the writer's whole run. The operating system releases that
lock when the process ends, however it ends (``kill -9`` included; on NFS, where Linux maps
``flock`` onto the server's byte-range locks, the server's lease expires with the client), so
a lock file nobody holds is stale: the next run takes it
over with a warning naming the writer that left it. A second run while the first writes says
so in one line and stops, or with ``wait`` waits for the first to finish (then finds the output
done, and does nothing). On systems without ``fcntl`` no lock is taken.
"""

from __future__ import annotations

import json
import os
import socket
import time
from datetime import datetime, timezone
from pathlib import Path

from climgen.errors import ClimgenWarning, ConfigError, OutputLockedError, warn_user

POLL_SECONDS = 2.0  # how often a waiting run looks again


class StaleLockWarning(ClimgenWarning):
    """A lock file left by a climgen process that is gone was taken over."""


def lock_path(output: Path) -> Path:
    """Where the lock of ``output`` lives."""
    return output.with_name(f".{output.name}.climgen-lock")


def _holder(path: Path) -> dict:
    """What the lock file says about its writer (empty when unreadable)."""
    try:
        return json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return {}


def _read(descriptor: int) -> dict:
    """What a lock file we hold says, read through our own descriptor."""
    try:
        return json.loads(os.pread(descriptor, 4096, 0).decode() or "{}")
    except (OSError, ValueError):
        return {}


def _describe(holder: dict) -> str:
    return f"host {holder.get('host', '?')}, pid {holder.get('pid', '?')}, since {holder.get('since', '?')}"


class OutputLock:
    """The lock of one output; use as a context manager around the whole write."""

    def __init__(self, output: str | Path, wait: bool = False, poll: float = POLL_SECONDS):
        self.output = Path(output)
        self.path = lock_path(self.output)
        self.wait = wait
        self.poll = poll
        self._descriptor: int | None = None

    def acquire(self) -> OutputLock:
        """Take the lock, or raise :class:`~climgen.errors.OutputLockedError` (``wait``: wait)."""
        try:
            import fcntl
        except ImportError:  # pragma: no cover - no fcntl (Windows): no lock
            return self
        if not self.path.parent.is_dir():
            raise ConfigError(f"output folder {self.path.parent} does not exist")
        while True:
            try:
                descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as error:  # a read-only folder: said before any work is done
                raise ConfigError(f"cannot write in {self.path.parent}: {error.strerror}") from None
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(descriptor)
                holder = _holder(self.path)
                if not self.wait:
                    raise OutputLockedError(
                        f"another climgen process is writing {self.output} ({_describe(holder)}); "
                        "wait for it to finish, or rerun with --wait"
                    ) from None
                time.sleep(self.poll)
                continue
            if not self._same_file(descriptor):
                os.close(descriptor)  # the file was replaced between open and lock: lock the new one
                continue
            left = _read(descriptor)
            if left.get("pid"):
                warn_user(
                    f"taking over the lock of {self.output} left by a climgen process that is gone ({_describe(left)})",
                    StaleLockWarning,
                )
            self._descriptor = descriptor
            self._write_holder()
            return self

    def _same_file(self, descriptor: int) -> bool:
        try:
            return os.fstat(descriptor).st_ino == os.stat(self.path).st_ino
        except FileNotFoundError:
            return False

    def _write_holder(self) -> None:
        since = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        text = json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "since": since})
        os.ftruncate(self._descriptor, 0)
        os.pwrite(self._descriptor, text.encode(), 0)
        os.fsync(self._descriptor)

    def release(self) -> None:
        """Give the lock up and remove its file (a waiting run then takes a fresh one)."""
        if self._descriptor is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        finally:
            os.close(self._descriptor)  # closing releases the flock
            self._descriptor = None

    def __enter__(self) -> OutputLock:
        return self.acquire()

    def __exit__(self, *exc_info) -> None:
        self.release()

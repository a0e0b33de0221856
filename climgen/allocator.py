"""Keep freed memory in the process (glibc), so tile-sized maps are not faulted in anew.

On CPU every intermediate map of the generator (a few MB for a 136 x 136 window of 24
channels) is a fresh ``malloc``. With glibc's defaults, freed blocks at the top of the heap
above the trim threshold go back to the OS and large requests may get fresh ``mmap`` regions,
so the next map of the same size page-faults its memory in again: on 2 cores that is about a
tenth of a refinement's time. Raising the mmap and trim thresholds keeps such blocks for reuse
at the price of up to a few tens of MB of resident memory. The setting is process-wide, so it
is applied once and only on Linux with glibc; in a user's own process never over their
``MALLOC_*`` settings, and nowhere under ``CLIMGEN_MALLOC=system``. It changes speed and
memory only, never results.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

from climgen.errors import ConfigError

# mallopt parameters (glibc malloc.h)
M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3

#: values set: blocks up to 32 MiB come from the heap, up to 128 MiB of free top is kept, and
#: the heap grows 16 MiB at a time (fewer system calls)
SETTINGS = {M_MMAP_THRESHOLD: 32 << 20, M_TRIM_THRESHOLD: 128 << 20, M_TOP_PAD: 16 << 20}
USER_VARIABLES = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "GLIBC_TUNABLES")
OPT_OUT = "CLIMGEN_MALLOC"

_applied: bool | None = None


def _glibc() -> ctypes.CDLL | None:
    """The C library when it is glibc (``mallopt`` exists there), else None."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:  # pragma: no cover - a glibc system without a loadable libc
        return None


def retain_freed_memory(respect_environment: bool = True) -> bool:
    """Raise glibc's malloc thresholds once for this process; True when they are in force.

    ``respect_environment`` leaves the allocator alone when the user set any of
    :data:`USER_VARIABLES`; dask worker plugins pass False, since the nanny sets
    ``MALLOC_TRIM_THRESHOLD_`` in every worker by default, not the user. ``CLIMGEN_MALLOC=system``
    always keeps the system's behaviour.
    """
    global _applied
    if _applied is not None:
        return _applied
    chosen = os.environ.get(OPT_OUT, "").strip().lower()
    if chosen not in ("", "retain", "system"):
        raise ConfigError(f"{OPT_OUT} must be 'retain' or 'system', got {chosen!r}")
    user_set = respect_environment and any(name in os.environ for name in USER_VARIABLES)
    libc = None if chosen == "system" or user_set else _glibc()
    _applied = libc is not None and all(libc.mallopt(parameter, value) == 1 for parameter, value in SETTINGS.items())
    return _applied

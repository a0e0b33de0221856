"""climgen.allocator: glibc keeps freed tile-sized blocks once climgen raised its thresholds.

Each case runs in a fresh interpreter: the setting is process-wide and applied once.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

from climgen.allocator import OPT_OUT, USER_VARIABLES

glibc_only = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")

# 24 MiB: above glibc's default mmap threshold (128 KiB, raised only by freeing larger mmaps)
# and below climgen's (32 MiB). Reports whether the block came from mmap, and whether freeing
# it gave the memory back (the heap's top shrank) or kept it for the next map.
PROBE = """
import ctypes, json, sys
from climgen.allocator import retain_freed_memory

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
applied = retain_freed_memory(respect_environment=sys.argv[1] == "respect")
before = libc.mallinfo2()
block = libc.malloc(24 << 20)
during = libc.mallinfo2()
libc.free(block)
after = libc.mallinfo2()
print(json.dumps({
    "applied": applied,
    "mmapped": during.hblkhd - before.hblkhd >= 24 << 20,
    "kept": after.arena >= before.arena + (24 << 20),
}))
"""


def probe(respect: bool = True, **environment: str) -> dict:
    env = {key: value for key, value in os.environ.items() if key not in (*USER_VARIABLES, OPT_OUT)}
    env.update(environment)
    command = [sys.executable, "-c", PROBE, "respect" if respect else "override"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@glibc_only
def test_freed_tile_blocks_stay_in_the_heap():
    assert probe() == {"applied": True, "mmapped": False, "kept": True}


@glibc_only
def test_system_behaviour_on_request():
    # glibc's own defaults: the block is its own mmap, unmapped when freed
    assert probe(CLIMGEN_MALLOC="system") == {"applied": False, "mmapped": True, "kept": False}


@glibc_only
def test_user_malloc_settings_win_unless_overridden():
    assert probe(MALLOC_TRIM_THRESHOLD_="65536")["applied"] is False
    # what a dask worker plugin does: the nanny, not the user, set that variable
    assert probe(respect=False, MALLOC_TRIM_THRESHOLD_="65536")["applied"] is True
    assert probe(respect=False, CLIMGEN_MALLOC="system")["applied"] is False


def test_unknown_choice_is_a_clear_error():
    env = {key: value for key, value in os.environ.items() if key != OPT_OUT}
    env[OPT_OUT] = "jemalloc"
    code = "from climgen.allocator import retain_freed_memory; retain_freed_memory()"
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)
    assert result.returncode != 0
    assert "CLIMGEN_MALLOC must be 'retain' or 'system'" in result.stderr

"""Temporary outputs of killed in-memory writes are cleaned up; those of live runs are kept.

(The kill -9 and resume test of the streaming path is in test_streaming.py.)
"""

import os

from climgen.io.write import remove_stale_partials


def test_partials_of_live_processes_are_kept(tmp_path):
    target = tmp_path / "out.nc"
    mine = tmp_path / f".out.nc.partial-{os.getpid()}-abcd1234"
    dead = tmp_path / ".out.nc.partial-999999999-abcd1234"
    mine.write_text("in progress")
    dead.write_text("left by a killed run")
    assert remove_stale_partials(target) == [dead]
    assert mine.exists() and not dead.exists()

"""Write ``demo_reference.json``: what ``climgen demo`` must keep giving (tests/test_demo.py).

Run it only when a change alters the demo's output on purpose, and say so in CHANGELOG.md:
``python tests/data/make_demo_reference.py`` (it runs the demo into a temporary folder).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import xarray as xr

HERE = Path(__file__).resolve().parent
STRIDE = 8
"""Every STRIDE-th fine cell of months 1 and 7 is stored; the depth map is stored whole."""


def summarise(path: Path) -> dict:
    """The stored sample of a demo output (of the float32 model, which every CPU computes): decimated temperatures, the depth map, the tolerance."""
    with xr.open_dataset(path) as ds:
        tas = ds["tas"].values.astype(np.float64)
        return {
            "shape": list(tas.shape),
            "tas_sample": np.round(tas[[0, 6], ::STRIDE, ::STRIDE], 5).tolist(),
            "tas_monthly_mean": np.round(tas.mean(axis=(1, 2)), 5).tolist(),
            "refinement_depth": ds["refinement_depth"].values.astype(int).tolist(),
        }


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        command = [sys.executable, "-m", "climgen.cli", "demo", "--out", folder, "--precision", "float32"]
        subprocess.run(command, check=True, capture_output=True)
        reference = summarise(Path(folder) / "africa_tas_x4.nc")
    (HERE / "demo_reference.json").write_text(json.dumps(reference) + "\n")
    print(f"wrote {HERE / 'demo_reference.json'}")


if __name__ == "__main__":
    main()

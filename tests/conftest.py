"""Shared fixtures: small real and generated fields, all offline."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import xarray as xr
from hypothesis import settings

import climgen  # noqa: F401  (registers the accessor)
from climgen.grid import coarsen_dataset

DATA = Path(__file__).parent / "data"

# Property tests draw the same examples on every run (a suite that passes passes again, on any
# clone); HYPOTHESIS_PROFILE=explore draws new ones on each run, to hunt for failures.
settings.register_profile("repeatable", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))


@pytest.fixture(autouse=True)
def no_standing_attributes(monkeypatch, tmp_path_factory):
    """Tests see no user's standing attributes file (~/.config/climgen/attributes.yaml)."""
    monkeypatch.delenv("CLIMGEN_ATTRIBUTES", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("config")))


@pytest.fixture(scope="session")
def hsurf_truth() -> xr.Dataset:
    """Real rotated-pole surface height over east Africa (held out from model training)."""
    with xr.open_dataset(DATA / "hsurf_east_africa.nc") as ds:
        return ds.load()


@pytest.fixture(scope="session")
def hsurf_coarse(hsurf_truth) -> xr.Dataset:
    """The real field coarsened by 4 (block means): what climgen must refine back."""
    return coarsen_dataset(hsurf_truth, 4)


@pytest.fixture
def hsurf_coarse_file(hsurf_coarse, tmp_path) -> Path:
    from climgen.grid import find_spatial_axes
    from climgen.io.cf import tidy
    from climgen.io.encoding import encoding_for_plain

    path = tmp_path / "hsurf_coarse.nc"
    ds = tidy(hsurf_coarse.copy(), find_spatial_axes(hsurf_coarse))
    ds.to_netcdf(path, encoding=encoding_for_plain(ds))
    return path


@pytest.fixture
def climgen_cli(monkeypatch, capsys):
    """Run the ``climgen`` command line in this process, through its entry point as the
    installed command runs it, without a new interpreter's seconds of imports; returns a
    :class:`subprocess.CompletedProcess` (return code, stdout, stderr). Tests of what only a
    separate process shows (signals, a killed worker, a full disk) start one instead."""
    from climgen.cli import main

    def run(*arguments, cwd=None) -> subprocess.CompletedProcess:
        monkeypatch.setattr(sys, "argv", ["climgen", *map(str, arguments)])
        if cwd is not None:
            monkeypatch.chdir(cwd)  # back where it was after the test
        capsys.readouterr()
        with warnings.catch_warnings():  # the command line shows warnings its own way: restored after
            warnings.simplefilter("default")
            code = 0
            try:
                main()
            except SystemExit as stop:
                code = stop.code if isinstance(stop.code, int) else int(stop.code is not None)
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(arguments, code, out, err)

    return run

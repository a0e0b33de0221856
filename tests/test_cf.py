"""Both CF checkers, offline, on every kind of output."""

import shutil

import pandas as pd
import pytest
import xarray as xr

from climgen.io.cf import encoding_for, refined_variables
from climgen.io.write import write_dataset
from climgen.testing import make_dataset

checks = pytest.importorskip("climgen.io.checks")


def _write(result, path):
    write_dataset(result, path, encoding_for(result, refined_variables(result), (64, 64)))
    return path


def _assert_clean(path):
    for result in checks.run_checks(path):
        assert result.errors == 0 and result.warnings == 0, result.summary()


@pytest.fixture(scope="module")
def checker_ready():
    if (
        shutil.which("compliance-checker") is None
        and not checks.Path(checks.sys.executable).with_name("compliance-checker").exists()
    ):
        pytest.skip("compliance-checker is not installed (pip install 'climgen[check]')")
    try:
        import cfchecker  # noqa: F401
    except ImportError:
        pytest.skip("cfchecker is not installed (pip install 'climgen[check]')")


@pytest.mark.parametrize("kind", ["latlon", "rotated", "projected"])
def test_each_grid_kind_is_cf_clean(kind, tmp_path, checker_ready):
    ds = make_dataset(kind, shape=(12, 16), times=3)
    _assert_clean(_write(ds.climgen.synthesize(factor=2), tmp_path / f"{kind}.nc"))


def test_real_rotated_pole_and_ensemble_are_cf_clean(hsurf_coarse, tmp_path, checker_ready):
    _assert_clean(_write(hsurf_coarse.climgen.synthesize(factor=4, members=2), tmp_path / "ensemble.nc"))


def test_gcm_time_series_with_bounds_is_cf_clean_and_round_trips(tmp_path, checker_ready):
    from importlib import resources

    sample = resources.files("climgen") / "data" / "africa_tas_monthly_2005.nc"
    with xr.open_dataset(str(sample)) as ds:
        path = _write(ds.climgen.synthesize(factor=2, variables=["tas"]), tmp_path / "tas.nc")
        _assert_clean(path)
        with xr.open_dataset(path) as out:
            assert out["time"].encoding["calendar"] == ds["time"].encoding["calendar"]
            assert pd.Timestamp(out["time"].encoding["units"].split(" since ")[1]) == pd.Timestamp(
                ds["time"].encoding["units"].split(" since ")[1]
            )
            assert out["time"].encoding["units"].startswith("days since")
            assert (out["time"].values == ds["time"].values).all()
            assert (out["time_bnds"].values == ds["time_bnds"].values).all()
            for key in ("standard_name", "units", "cell_methods", "long_name"):
                assert out["tas"].attrs[key] == ds["tas"].attrs[key]
            assert out.attrs["institution"] == ds.attrs["institution"]
            assert ds.attrs["history"] in out.attrs["history"]
            for name in ("lat", "lon", "lat_bnds", "lon_bnds", "time"):
                assert "_FillValue" not in out[name].encoding


def test_noleap_calendar_is_kept(tmp_path, checker_ready):
    ds = make_dataset("latlon", shape=(8, 8), times=2)
    path = _write(ds.climgen.synthesize(factor=2), tmp_path / "noleap.nc")
    _assert_clean(path)
    with xr.open_dataset(path, decode_times=xr.coders.CFDatetimeCoder(use_cftime=True)) as out:
        assert out["time"].encoding["calendar"] == "noleap"

"""Time and vertical steps as CMIP and reanalysis files hold them: model calendars,
climatologies, lead times, missing or unordered times and hybrid levels."""

import cftime
import numpy as np
import pytest
import xarray as xr

from climgen.errors import InputWarning
from climgen.testing import make_dataset

checks = pytest.importorskip("climgen.io.checks")


def _series(calendar: str = "noleap", times: int = 3) -> xr.Dataset:
    ds = make_dataset("latlon", shape=(16, 16), times=times)
    dates = xr.date_range("2000-01-16", periods=times, freq="MS", calendar=calendar, use_cftime=True)
    return ds.assign_coords(time=("time", dates, {"standard_name": "time"}))


def _clean(path) -> None:
    for result in checks.run_checks(path):
        assert result.errors == 0 and result.warnings == 0, result.summary()


def test_a_climatology_s_coverage_and_units_come_from_its_bounds(tmp_path):
    """A monthly 1981-2010 climatology: ACDD coverage over the thirty years, and its bounds
    stored in time's units even where the encoding was lost (CF 7.4)."""
    ds = _series(times=2)
    starts = [cftime.DatetimeNoLeap(1981, month, 1) for month in (1, 2)]
    ends = [cftime.DatetimeNoLeap(2010, month, 1) for month in (2, 3)]
    ds["time"].attrs["climatology"] = "climatology_bnds"
    ds["climatology_bnds"] = (("time", "nv"), np.array([starts, ends]).T)
    result = ds.climgen.synthesize(factor=2)
    assert result.attrs["time_coverage_start"] == "1981-01-01T00:00:00Z"
    assert result.attrs["time_coverage_end"] == "2010-03-01T00:00:00Z"
    assert result.attrs["time_coverage_resolution"] == "P1M"
    assert "long_name" not in result["climatology_bnds"].attrs
    result.to_netcdf(tmp_path / "climatology.nc")
    with xr.open_dataset(tmp_path / "climatology.nc", decode_times=False) as stored:
        assert stored["climatology_bnds"].attrs["units"] == stored["time"].attrs["units"]
    _clean(tmp_path / "climatology.nc")


def test_model_calendar_dates_and_missing_times_give_valid_acdd_coverage():
    yearly = make_dataset("latlon", shape=(16, 16), times=3)
    yearly = yearly.assign_coords(time=[cftime.Datetime360Day(year, 2, 30) for year in (2000, 2001, 2002)])
    attrs = yearly.climgen.synthesize(factor=2).attrs
    assert attrs["time_coverage_start"] == "2000-02-29T00:00:00Z"  # 30 February is no ISO 8601 date
    assert attrs["time_coverage_end"] == "2002-02-28T00:00:00Z" and attrs["time_coverage_resolution"] == "P1Y"
    missing = make_dataset("latlon", shape=(16, 16), times=3)
    missing = missing.assign_coords(time=np.array(["2000-01-01", "NaT", "2000-03-01"], dtype="datetime64[ns]"))
    with pytest.warns(InputWarning, match="'time' is not strictly monotonic"):
        attrs = missing.climgen.synthesize(factor=2).attrs
    assert (attrs["time_coverage_start"], attrs["time_coverage_end"]) == ("2000-01-01T00:00:00Z", "2000-03-01T00:00:00Z")


def test_unordered_steps_are_refined_with_a_warning_that_says_how_to_sort_them():
    ds = _series(times=3)
    with pytest.warns(InputWarning, match=r"ds.sortby\('time'\).drop_duplicates\('time'\)"):
        result = ds.isel(time=[2, 0, 1]).climgen.synthesize(factor=2)
    assert list(result["time"].values) == list(ds["time"].values[[2, 0, 1]])


def test_members_are_the_same_whether_times_were_decoded_or_not(tmp_path):
    _series(calendar="360_day").to_netcdf(tmp_path / "monthly.nc")
    with xr.open_dataset(tmp_path / "monthly.nc") as decoded, xr.open_dataset(tmp_path / "monthly.nc", decode_times=False) as raw:
        assert raw["time"].dtype.kind in "iuf"  # days since, undecoded
        one = decoded.climgen.synthesize(factor=2, members=2, seed=3)["tas"].values
        other = raw.climgen.synthesize(factor=2, members=2, seed=3)["tas"].values
    np.testing.assert_array_equal(one, other)


def test_lead_times_are_refined_and_stored_as_cf_allows(tmp_path):
    """ERA5's ``step`` (and hindcasts' lead times): a duration dimension."""
    ds = make_dataset("latlon", shape=(16, 16), times=3).rename(time="step")
    ds = ds.assign_coords(step=("step", np.array([0, 6, 12], dtype="timedelta64[h]").astype("timedelta64[s]")))
    result = ds.climgen.synthesize(factor=2)
    assert (result["step"].values == ds["step"].values).all()
    result.to_netcdf(tmp_path / "steps.nc")
    _clean(tmp_path / "steps.nc")


def test_hybrid_levels_keep_the_surface_pressure_their_formula_needs(tmp_path):
    """Refining only ``ta`` on hybrid sigma-pressure levels refines ``ps`` too (with a
    warning): the output's ``formula_terms`` would otherwise name a variable it lacks."""
    base = make_dataset("latlon", shape=(16, 16), times=2)
    levels = np.array([0.9, 0.5])
    ta = base["tas"].expand_dims(lev=levels, axis=1)
    ds = xr.Dataset(
        {
            "ta": ta.assign_attrs(units="K", standard_name="air_temperature"),
            "ps": (base["tas"] * 0 + 1e5).assign_attrs(units="Pa", standard_name="surface_air_pressure"),
            "ap": ("lev", np.array([1000.0, 20000.0]), {"units": "Pa", "long_name": "vertical coordinate formula term: ap(k)"}),
            "b": ("lev", np.array([0.89, 0.3]), {"units": "1", "long_name": "vertical coordinate formula term: b(k)"}),
        }
    )
    ds["lev"].attrs = {
        "standard_name": "atmosphere_hybrid_sigma_pressure_coordinate",
        "formula_terms": "ap: ap b: b ps: ps",
        "positive": "down",
        "axis": "Z",
        "units": "1",
    }
    with pytest.warns(InputWarning, match="refining 'ps' too: the formula_terms of the vertical coordinate name it"):
        result = ds.climgen.synthesize(factor=2, variables=["ta"])
    assert {"ta", "ps", "ap", "b"} <= set(result.data_vars)
    np.testing.assert_allclose(result["ps"].values, 1e5, rtol=1e-6)


def test_a_pressure_axis_without_positive_is_taken_as_downwards():
    ds = make_dataset("latlon", shape=(16, 16), times=0)
    ds = ds.assign(tas=ds["tas"].expand_dims(plev=[85000.0, 50000.0]))
    ds["plev"].attrs = {"units": "Pa", "axis": "Z", "standard_name": "air_pressure"}
    attrs = ds.climgen.synthesize(factor=2).attrs
    assert attrs["geospatial_vertical_positive"] == "down" and attrs["geospatial_vertical_max"] == 85000.0

"""Physical bounds of refined variables: read from the metadata, kept by every path (memory,
streaming, CLI) while blocks still average exactly to the coarse values."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr
import yaml

from climgen import pipeline, streaming
from climgen.errors import ConfigError
from climgen.io.physical import physical_bounds
from climgen.testing import assert_coarse_consistent


def _variable(name="v", encoding=None, **attrs) -> xr.DataArray:
    variable = xr.DataArray(np.zeros((2, 2)), dims=("y", "x"), name=name, attrs=attrs)
    variable.encoding.update(encoding or {})
    return variable


@pytest.mark.parametrize(
    "variable, expected",
    [
        (_variable(standard_name="land_area_fraction", units="1"), (0.0, 1.0)),
        (_variable(standard_name="sea_ice_area_fraction", units="%"), (0.0, 100.0)),
        (_variable(standard_name="cloud_area_fraction"), (0.0, None)),  # units unknown: 1 or 100?
        (_variable(standard_name="precipitation_flux", units="kg m-2 s-1"), (0.0, None)),
        (_variable("pr", units="kg m-2 s-1"), (0.0, None)),  # CMIP short name, no standard_name
        (_variable("hurs", units="%"), (0.0, 100.0)),
        # ERA5's r is over ice below -23 C, where it passes 100%: only a declared maximum caps it
        (_variable("r", units="%", standard_name="unknown", long_name="Relative humidity"), (0.0, None)),
        # cfgrib and the new CDS netCDF name it relative_humidity: still ERA5's
        (_variable("r", units="%", standard_name="relative_humidity", long_name="Relative humidity"), (0.0, None)),
        (_variable("hur", units="%", standard_name="relative_humidity", GRIB_paramId=157), (0.0, None)),
        (_variable("r", units="%", standard_name="unknown", long_name="Relative humidity", valid_max=150.0), (0.0, 150.0)),
        (_variable("r", units="1"), (None, None)),  # elsewhere r is often a correlation coefficient
        (_variable(standard_name="lwe_thickness_of_water_evaporation_amount"), (None, None)),  # dew makes it negative
        (_variable(standard_name="surface_net_downward_shortwave_flux"), (0.0, None)),  # net, yet never negative
        (_variable("RAINNC", units="mm"), (0.0, None)),  # WRF writes no standard names
        (_variable("SWDOWN", units="W m-2"), (0.0, None)),
        (_variable("ssrd", units="J m**-2", standard_name="unknown"), (0.0, None)),  # ERA5 (CDS, cfgrib)
        (_variable(standard_name="toa_outgoing_longwave_flux"), (0.0, None)),  # one way: never negative
        # ECMWF stores outgoing radiation negative, positive "down": never positive then
        (_variable(standard_name="toa_outgoing_longwave_flux", positive="down"), (None, 0.0)),
        (_variable(standard_name="toa_outgoing_longwave_flux", positive="up"), (0.0, None)),
        (_variable(standard_name="surface_downwelling_shortwave_flux_in_air", positive="up"), (None, 0.0)),
        (_variable(standard_name="surface_net_downward_longwave_flux", positive="down"), (None, None)),
        (_variable(standard_name="surface_net_downward_longwave_flux"), (None, None)),  # net: either sign
        (_variable(standard_name="mass_fraction_of_elemental_carbon_dry_aerosol_particles_in_air"), (0.0, None)),
        (_variable(standard_name="tendency_of_atmosphere_mass_content_of_water_vapor"), (None, None)),
        (_variable("tp", units="m", standard_name="unknown"), (0.0, None)),  # ERA5: a placeholder name
        (_variable("tcc", units="(0 - 1)"), (0.0, 1.0)),  # ERA5's fraction units
        # families of standard names outside the lists: falling water, area fractions, albedos, speeds
        (_variable(standard_name="solid_precipitation_flux", units="kg m-2 s-1"), (0.0, None)),
        (_variable(standard_name="convective_rainfall_flux"), (0.0, None)),
        (_variable(standard_name="thickness_of_rainfall_amount", units="m"), (0.0, None)),
        (_variable(standard_name="precipitation_minus_evaporation_flux"), (None, None)),  # net: either sign
        (_variable(standard_name="low_type_cloud_area_fraction", units="%"), (0.0, 100.0)),
        (_variable(standard_name="surface_albedo", units="1"), (0.0, 1.0)),
        (_variable(standard_name="sea_ice_speed", units="m s-1"), (0.0, None)),
        # ERA5's names of today's downloads, with its placeholder standard name
        (_variable("avg_tprate", units="kg m**-2 s**-1", standard_name="unknown"), (0.0, None)),
        (_variable("lcc", units="(0 - 1)", standard_name="unknown"), (0.0, 1.0)),
        (_variable("fal", units="(0 - 1)"), (0.0, 1.0)),
        (_variable("swvl1", units="m**3 m**-3"), (0.0, 1.0)),  # a ratio of volumes: at most 1
        (_variable("snowc", units="%"), (0.0, 100.0)),
        (_variable(units="0-1"), (0.0, 1.0)),  # units that state the range, whatever the name
        (_variable(standard_name="cloud_area_fraction", units="dimensionless"), (0.0, 1.0)),
        # a file's own names: known by the long name
        (_variable("rain", units="mm/day", long_name="Precipitation"), (0.0, None)),
        (_variable("rh", units="%", long_name="relative humidity"), (0.0, None)),  # may be over ice, as ERA5's
        (_variable("ci", units="(0 - 1)"), (0.0, 1.0)),  # ERA5's older sea-ice name
        (_variable("snc", units="%"), (0.0, 100.0)),  # CMIP's snow cover
        (_variable("clt", units="1e-2"), (0.0, 100.0)),  # percent, written as a scale
        (_variable("precipitation", units="mm/hr"), (0.0, None)),  # IMERG
        (_variable("PRECTOTCORR", units="kg m-2 s-1"), (0.0, None)),  # MERRA-2
        (_variable(standard_name="air_temperature", units="K"), (None, None)),
        (_variable(standard_name="eastward_wind", units="m s-1", valid_range=[-80.0, 80.0]), (-80.0, 80.0)),
        (_variable(standard_name="land_area_fraction", units="1", valid_min=0.2), (0.2, 1.0)),
        (_variable(standard_name="specific_humidity", valid_max=0.05), (0.0, 0.05)),
        (_variable(standard_name="land_area_fraction", units="1", valid_min=2.0), (0.0, 1.0)),  # contradicts: ignored
        # packed: valid_range holds packed numbers, not physical ones
        (_variable(standard_name="wind_speed", valid_range=[0, 32000], encoding={"scale_factor": 0.01}), (0.0, None)),
    ],
)
def test_bounds_follow_standard_name_units_and_valid_range(variable, expected):
    assert physical_bounds(variable, variable.name)[0] == expected


def test_unsigned_integers_are_never_negative():
    """Counts stored as unsigned integers (number of observations) came out negative beside
    zeros; unsigned storage, in memory or on file, is a lower bound of 0 (not when packed)."""
    counts = xr.DataArray(np.zeros((2, 2), dtype="u2"), dims=("y", "x"), attrs={"units": "1"})
    assert physical_bounds(counts, "nobs") == ((0.0, None), "unsigned storage (uint16)")
    decoded = _variable("nobs", encoding={"dtype": np.dtype("u1"), "_FillValue": 255}, units="1")
    assert physical_bounds(decoded, "nobs")[0] == (0.0, None)
    packed = _variable("t", encoding={"dtype": np.dtype("u2"), "scale_factor": 0.01, "add_offset": -50.0})
    assert physical_bounds(packed, "t")[0] == (None, None)


def test_bounds_say_where_they_come_from():
    assert physical_bounds(_variable("pr"), "pr")[1] == "variable name pr (precipitation_flux)"
    named = _variable(standard_name="land_area_fraction", units="%", valid_max=90.0)
    assert physical_bounds(named, "x") == ((0.0, 90.0), "standard_name land_area_fraction; valid range")
    assert physical_bounds(_variable(standard_name="air_temperature"), "tas") == ((None, None), None)


def test_a_fraction_whose_units_say_no_scale_is_kept_non_negative_with_a_warning():
    from climgen.inputs import PhysicalBoundsWarning, variable_bounds

    ds = xr.Dataset({"hurs": _variable("hurs", standard_name="relative_humidity")})
    with pytest.warns(PhysicalBoundsWarning, match=r"kept non-negative only; give its units \('1' or '%'\)"):
        assert variable_bounds(ds, ["hurs"])["hurs"][0] == (0.0, None)


def _coast(hsurf_truth) -> xr.Dataset:
    """A land fraction with real coastlines (sea is 0, land 1, shores between) from the real
    east-African terrain: sharp edges a refinement overshoots."""
    land = np.clip(hsurf_truth["HSURF"] / 40.0, 0.0, 1.0).rename("sftlf")
    land.attrs = {"standard_name": "land_area_fraction", "units": "1"}
    return land.to_dataset().assign_coords(hsurf_truth.coords)


@pytest.fixture(scope="module")
def coast_coarse(hsurf_truth):
    from climgen.grid import coarsen_dataset

    return coarsen_dataset(_coast(hsurf_truth), 4)


def test_land_fraction_stays_between_0_and_1_and_closer_to_the_truth(coast_coarse, hsurf_truth):
    truth = _coast(hsurf_truth)["sftlf"].values
    bounded = pipeline.synthesize(coast_coarse, factor=4, seed=1)
    free = pipeline.synthesize(coast_coarse, factor=4, seed=1, bounds={"sftlf": (None, None)})
    assert float(free["sftlf"].min()) < -0.01 or float(free["sftlf"].max()) > 1.01, "unbounded refinement overshoots"
    assert float(bounded["sftlf"].min()) >= 0.0 and float(bounded["sftlf"].max()) <= 1.0
    assert_coarse_consistent(bounded["sftlf"], coast_coarse["sftlf"], 4)

    def rmse(ds):
        return float(np.sqrt(np.mean((ds["sftlf"].values - truth) ** 2)))

    assert rmse(bounded) < rmse(free)
    recorded = json.loads(bounded.attrs["climgen_provenance"])["physical_bounds"]
    assert recorded == {"sftlf": {"lower": 0.0, "upper": 1.0, "from": "standard_name land_area_fraction"}}


def test_given_bounds_override_and_out_of_bounds_coarse_values_are_kept_with_a_warning(coast_coarse):
    coarse = coast_coarse.copy(deep=True)
    coarse["sftlf"][0, 3, 4] = 1.2  # e.g. a regridding artefact
    with pytest.warns(pipeline.PhysicalBoundsWarning, match="1 coarse value"):
        out = pipeline.synthesize(coarse, factor=4, seed=1)
    np.testing.assert_allclose(out["sftlf"].values[0, 12:16, 16:20], 1.2, rtol=1e-6)
    with pytest.warns(pipeline.PhysicalBoundsWarning, match="outside its physical bounds"):
        tight = pipeline.synthesize(coast_coarse, factor=4, seed=1, bounds={"sftlf": (0.0, 0.9)})
    inside = coast_coarse["sftlf"].values.repeat(4, -2).repeat(4, -1) <= 0.9
    assert float(tight["sftlf"].values[inside].max()) <= 0.9


def test_bad_bounds_are_config_errors(coast_coarse):
    with pytest.raises(ConfigError, match="lower must be below upper"):
        pipeline.synthesize(coast_coarse, bounds={"sftlf": (1, 0)})
    with pytest.raises(ConfigError, match=r"\(lower, upper\)"):
        pipeline.synthesize(coast_coarse, bounds={"sftlf": 0})
    with pytest.raises(ConfigError, match="not refined here"):
        pipeline.synthesize(coast_coarse, bounds={"pr": (0, None)})


def test_streamed_and_cli_outputs_keep_the_bounds_with_the_same_bits(coast_coarse, tmp_path, climgen_cli):
    source = tmp_path / "coast.nc"
    coast_coarse.to_netcdf(source)
    in_memory = pipeline.synthesize(coast_coarse, factor=4, seed=3, tile_size=8)
    config = pipeline.make_config(factor=4, seed=3, tile_size=8)
    with xr.open_dataset(source) as ds:
        streaming.run(ds, tmp_path / "out.zarr", config, options=streaming.StreamOptions(region_tiles=2, progress=False))
    with xr.open_zarr(tmp_path / "out.zarr") as got:
        np.testing.assert_array_equal(got["sftlf"].values, in_memory["sftlf"].values)
    output = tmp_path / "free.nc"
    result = climgen_cli("synthesize", source, output, "--bounds", "sftlf=:", "--quiet")
    assert result.returncode == 0, result.stderr
    with xr.open_dataset(output) as free:
        assert float(free["sftlf"].min()) < 0.0 or float(free["sftlf"].max()) > 1.0
        assert json.loads(free.attrs["climgen_provenance"])["physical_bounds"] == {}
    recipe = tmp_path / "job.yaml"
    recipe.write_text(
        yaml.safe_dump({"input": "coast.nc", "output": "tight.zarr", "tile_size": 8, "bounds": {"sftlf": [0.1, None]}})
    )
    planned = climgen_cli("run", recipe, "--dry-run")
    assert planned.returncode == 0, planned.stderr
    assert "bounds      sftlf: 0.1.. (given)" in planned.stdout
    result = climgen_cli("run", recipe, "--quiet")
    assert result.returncode == 0, result.stderr
    assert "kept within sftlf 0.1..;" in result.stdout
    below = int((coast_coarse["sftlf"].values < 0.1).sum())
    assert f"climgen: warning: {below} coarse value(s) of 'sftlf' lie outside its physical bounds" in result.stderr
    with xr.open_zarr(tmp_path / "tight.zarr") as tight:
        inside = coast_coarse["sftlf"].values.repeat(4, -2).repeat(4, -1) >= 0.1
        assert float(tight["sftlf"].values[inside].min()) >= 0.1
        assert json.loads(tight.attrs["climgen_provenance"])["physical_bounds"]["sftlf"]["from"] == "given"


def test_evaluate_reports_the_share_of_cells_outside_the_bounds(coast_coarse, hsurf_truth):
    from climgen.evaluation import evaluate, format_table

    rows = evaluate(_coast(hsurf_truth), pipeline.synthesize(coast_coarse, factor=4, seed=1), factor=4)
    by_method = {row["method"]: row for row in rows}
    assert by_method["prediction"]["outside_bounds"] == 0
    assert by_method["bicubic"]["outside_bounds"] > 0.01, "bicubic overshoots coastlines"
    assert "| sftlf | prediction |" in format_table(rows) and "0.0% |" in format_table(rows)


def test_outgoing_radiation_stored_negative_keeps_its_detail_and_a_fraction_s_units_are_cf():
    """Outgoing longwave radiation stored negative (positive "down") was bounded at 0 from
    below, so every block was "outside its bounds" and kept its coarse value: no detail at
    all. ERA5's fraction units "(0 - 1)" bounded the field right but went to the output,
    which CF checkers refuse; it is written as "1"."""
    from climgen.testing import make_dataset

    ds = make_dataset("latlon", shape=(24, 32), times=1)
    olr = (-240.0 - 3.0 * (ds["tas"] - 280.0)).astype(np.float32)
    olr.attrs = {"standard_name": "toa_outgoing_longwave_flux", "units": "W m-2", "positive": "down"}
    cloud = (0.5 + 0.05 * (ds["tas"] - 280.0)).clip(0, 1).astype(np.float32)
    cloud.attrs = {"standard_name": "cloud_area_fraction", "units": "(0 - 1)"}
    result = ds.assign(rlut=olr, tcc=cloud).climgen.synthesize(factor=4, variables=["rlut", "tcc"])
    blocks = result["rlut"].values.reshape(-1, 24, 4, 32, 4)
    assert (blocks.std(axis=(2, 4)) > 0).mean() > 0.9 and float(result["rlut"].max()) <= 0.0
    assert result["tcc"].attrs["units"] == "1" and "'(0 - 1)' of the input written as '1'" in result["tcc"].attrs["comment"]
    assert 0.0 <= float(result["tcc"].min()) and float(result["tcc"].max()) <= 1.0

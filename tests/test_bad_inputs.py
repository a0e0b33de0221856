"""A catalogue of bad or odd inputs, each with its exact behaviour.

Every case is documented in docs/troubleshooting.md (same ids). Cases that are errors assert
the error class and message; cases that are handled assert the correct output.
"""

from __future__ import annotations

import contextlib
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from climgen import pipeline
from climgen.errors import ConfigError, GridError, InputError, InputWarning, ModelError, OutputExistsError
from climgen.inputs import PhysicalBoundsWarning
from climgen.io.open import open_covariate, open_input, open_inputs, parse_covariate
from climgen.io.write import check_output
from climgen.pipeline import LongitudeWarning
from climgen.testing import assert_coarse_consistent, make_dataset

# --- errors: (id, how to provoke it, error class, message) ----------------------------------


def _small(**kwargs) -> xr.Dataset:
    return make_dataset("latlon", shape=(8, 8), **kwargs)


def _overlapping_files(tmp: Path):
    """Two files that both hold the middle step (a historical run and its scenario, say)."""
    ds = _small(times=3)
    ds.isel(time=[0, 1]).to_netcdf(tmp / "a.nc")
    ds.isel(time=[1, 2]).to_netcdf(tmp / "b.nc")
    return open_inputs([tmp / "a.nc", tmp / "b.nc"])


def _unmarked_fill_values(times: int = 1) -> xr.Dataset:
    """Cells holding netCDF's default fill value with no attribute to mark them missing."""
    ds = _small(times=times) if times > 1 else _small()
    values = ds["tas"].values.copy()
    values[..., 0, :3] = 9.96921e36
    return ds.assign(tas=(ds["tas"].dims, values, ds["tas"].attrs))


def _not_netcdf(tmp: Path):
    (tmp / "notes.nc").write_text("this is not a NetCDF file")
    return open_input(tmp / "notes.nc")


def _truncated(tmp: Path):
    source = Path(__file__).parent / "data" / "hsurf_east_africa.nc"
    (tmp / "cut.nc").write_bytes(source.read_bytes()[: source.stat().st_size // 3])
    with open_input(tmp / "cut.nc") as ds:
        return pipeline.synthesize(ds, factor=2)


def _empty_dir(tmp: Path):
    (tmp / "store.zarr").mkdir()
    return open_input(tmp / "store.zarr")


def _with_lon(values):
    return _small().assign_coords(lon=np.asarray(values, dtype=float))


def _string_variable():
    ds = _small()
    ds["label"] = (("lat", "lon"), np.full((8, 8), "a"))
    return pipeline.synthesize(ds, variables=["label"])


def _timeseries_variable():
    ds = make_dataset("latlon", shape=(8, 8), times=2)
    ds["index"] = ("time", [1.0, 2.0])
    return pipeline.synthesize(ds, variables=["index"])


def _single_cell_no_bounds():
    return pipeline.synthesize(_small().isel(lat=[0]), factor=2)


def _with_realization():
    ensemble = xr.concat([_small(), _small() + 1], dim="realization")
    return pipeline.synthesize(ensemble, factor=2)


def _covariate_with_time():
    covariate = make_dataset("latlon", shape=(16, 16), times=3)["tas"]
    return pipeline.synthesize(_small(), factor=2, covariates={"elevation": covariate})


def _checkpoint_json_garbage(tmp: Path):
    from climgen.models.checkpoint import load_checkpoint, save_checkpoint
    from climgen.models.generator import AdaptiveMultiScaleGenerator, GeneratorConfig

    path = save_checkpoint(AdaptiveMultiScaleGenerator(GeneratorConfig(channels=4, blocks=1)), tmp / "m", "amsgm")
    path.with_suffix(".json").write_text("{not json")
    return load_checkpoint(path)


def _checkpoint_wrong_architecture(tmp: Path):
    from climgen.models.checkpoint import load_checkpoint, save_checkpoint
    from climgen.models.generator import AdaptiveMultiScaleGenerator, GeneratorConfig

    path = save_checkpoint(AdaptiveMultiScaleGenerator(GeneratorConfig(channels=4, blocks=1)), tmp / "m", "amsgm")
    document = json.loads(path.with_suffix(".json").read_text())
    document["architecture"] = "mystery"
    path.with_suffix(".json").write_text(json.dumps(document))
    return load_checkpoint(path)


def _existing_output(tmp: Path):
    (tmp / "out.nc").write_text("keep me")
    return check_output(tmp / "out.nc", overwrite=False)


def _grouped(tmp: Path, groups: tuple[str, ...]) -> Path:
    path = tmp / "grouped.nc"
    for index, group in enumerate(groups):  # the first group holds tas, the others other variables
        _small().rename(tas=f"tas_{index}" if index else "tas").to_netcdf(path, group=group, mode="a" if index else "w")
    return path


def _with_lat_bounds(ds: xr.Dataset) -> xr.Dataset:
    spacing = float(ds.lat[1] - ds.lat[0])
    return ds.assign(lat_bnds=(("lat", "nv"), np.stack([ds.lat - spacing / 2, ds.lat + spacing / 2], axis=-1)))


ERRORS = [
    ("missing-input", lambda tmp: open_input(tmp / "absent.nc"), InputError, "input not found"),
    ("data-in-several-groups", lambda tmp: open_input(_grouped(tmp, ("A", "B"))), InputError, "several groups"),
    ("not-netcdf", _not_netcdf, InputError, "notes.nc: not a NetCDF file or zarr store .no xarray backend recognises it.$"),
    ("truncated-netcdf", _truncated, InputError, "cannot read"),
    ("empty-zarr-folder", _empty_dir, InputError, "cannot read"),
    (
        "no-spatial-axes",
        lambda tmp: pipeline.synthesize(_small().rename(lat="a", lon="b").drop_vars(["a", "b"])),
        GridError,
        "no spatial axes",
    ),
    (
        "unknown-variable",  # the fields it could refine are offered, not the bounds beside them
        lambda tmp: pipeline.synthesize(_with_lat_bounds(_small()), variables=["pr"]),
        InputError,
        r"variables not found: \['pr'\]; the input's fields on the grid are \['tas'\]$",
    ),
    ("non-numeric-variable", lambda tmp: _string_variable(), InputError, "not numeric"),
    (
        "climgen-map-as-variable",
        lambda tmp: pipeline.synthesize(pipeline.synthesize(_small(), factor=2), variables=["refinement_depth"]),
        InputError,
        "map climgen writes with every output",
    ),
    (
        "empty-time",
        lambda tmp: pipeline.synthesize(make_dataset("latlon", shape=(8, 8), times=2).isel(time=slice(0, 0))),
        InputError,
        "dimension 'time' has length 0",
    ),
    (
        "empty-selection",
        lambda tmp: pipeline.synthesize(_small().sel(lat=slice(50, 40))),
        InputError,
        "dimension 'lat' has length 0",
    ),
    ("variable-without-grid", lambda tmp: _timeseries_variable(), InputError, "does not span"),
    ("factor-3", lambda tmp: pipeline.synthesize(_small(), factor=3), ConfigError, "factor must be one of"),
    ("factor-1", lambda tmp: pipeline.synthesize(_small(), factor=1), ConfigError, "factor must be one of"),
    ("factor-32", lambda tmp: pipeline.synthesize(_small(), factor=32), ConfigError, "factor must be one of"),
    (
        "non-monotonic-lon",
        lambda tmp: pipeline.synthesize(_with_lon([0, 1, 3, 2, 4, 5, 6, 7])),
        GridError,
        "not strictly monotonic",
    ),
    ("duplicate-lon", lambda tmp: pipeline.synthesize(_with_lon([0, 1, 2, 2, 4, 5, 6, 7])), GridError, "not strictly monotonic"),
    ("nan-in-coordinate", lambda tmp: pipeline.synthesize(_with_lon([0, 1, 2, np.nan, 4, 5, 6, 7])), GridError, "missing values"),
    (
        "lon-separate-pieces",
        lambda tmp: pipeline.synthesize(_with_lon([0, 2, 4, 6, 200, 202, 204, 206])),
        GridError,
        "separate pieces",
    ),
    ("single-cell-no-bounds", lambda tmp: _single_cell_no_bounds(), GridError, "single value and no bounds"),
    ("negative-seed", lambda tmp: pipeline.synthesize(_small(), seed=-1), ConfigError, "seed"),
    ("zero-members", lambda tmp: pipeline.synthesize(_small(), members=0), ConfigError, "members"),
    ("budget-above-one", lambda tmp: pipeline.synthesize(_small(), budget=1.5), ConfigError, "budget must be in"),
    ("budget-with-uniform", lambda tmp: pipeline.synthesize(_small(), budget=0.5, adaptive=False), ConfigError, "budget applies"),
    (
        "attribute-reserved",
        lambda tmp: pipeline.synthesize(_small(), attributes={"history": "x"}),
        ConfigError,
        "climgen's to write",
    ),
    ("attribute-name", lambda tmp: pipeline.synthesize(_small(), attributes={"my key": "x"}), ConfigError, "attribute names"),
    ("attribute-value", lambda tmp: pipeline.synthesize(_small(), attributes={"id": [1, 2]}), ConfigError, "text or a number"),
    (
        "covariate-elsewhere",
        lambda tmp: pipeline.synthesize(_small(), covariates={"e": _small()["tas"].assign_coords(lat=np.linspace(60, 70, 8))}),
        InputError,
        "does not overlap",
    ),
    (
        "covariate-other-grid-kind",
        lambda tmp: pipeline.synthesize(_small(), covariates={"e": make_dataset("rotated")["tas"]}),
        InputError,
        "regrid the covariate",
    ),
    ("covariate-not-static", lambda tmp: _covariate_with_time(), InputError, "must be static"),
    ("realization-in-input", lambda tmp: _with_realization(), InputError, "rename the input's first"),
    ("covariate-spec", lambda tmp: parse_covariate("elevation"), InputError, "NAME=FILE"),
    (
        "covariate-variable-unknown",
        lambda tmp: open_covariate(Path(__file__).parent / "data" / "hsurf_east_africa.nc", "orog"),
        InputError,
        "not in",
    ),
    ("pickle-checkpoint", lambda tmp: pipeline.synthesize(_small(), model=str(tmp / "model.pth")), ModelError, "pickle"),
    (
        "checkpoint-missing",
        lambda tmp: pipeline.synthesize(_small(), model=str(tmp / "none.safetensors")),
        ModelError,
        "not found",
    ),
    ("checkpoint-json-garbage", _checkpoint_json_garbage, ModelError, "not valid JSON"),
    ("checkpoint-architecture", _checkpoint_wrong_architecture, ModelError, "unknown architecture"),
    ("output-exists", _existing_output, OutputExistsError, "--overwrite"),
    ("output-suffix", lambda tmp: check_output(tmp / "out.csv", overwrite=False), ConfigError, "must end in .nc or .zarr"),
    ("output-folder-missing", lambda tmp: check_output(tmp / "no" / "out.nc", overwrite=False), ConfigError, "does not exist"),
    ("overlapping-files", lambda tmp: _overlapping_files(tmp), InputError, "the 2 inputs overlap: time"),
    (
        "unmarked-fill-values",
        lambda tmp: pipeline.synthesize(_unmarked_fill_values()),
        InputError,
        "holds 3 values of magnitude 1e.36 or more",
    ),
]


@pytest.mark.parametrize("case, provoke, error, message", ERRORS, ids=[case[0] for case in ERRORS])
def test_error_cases(case, provoke, error, message, tmp_path):
    with pytest.raises(error, match=message.replace("(", r"\(")):
        provoke(tmp_path)


# --- handled cases: (id, input, check of the output) ---------------------------------------


def _fill_value_file(tmp: Path) -> xr.Dataset:
    ds = _small()
    ds["tas"][2:4, 2:4] = np.nan
    ds.to_netcdf(tmp / "fill.nc", encoding={"tas": {"_FillValue": -999.0}})
    with xr.open_dataset(tmp / "fill.nc", mask_and_scale=False) as raw:
        assert (raw["tas"].values == -999.0).sum() == 4  # really stored as fill values
    return xr.open_dataset(tmp / "fill.nc")


def _missing_value_file(tmp: Path) -> xr.Dataset:
    ds = _small()
    values = ds["tas"].values.copy()
    values[0, :3] = -1.0e30
    ds["tas"] = (("lat", "lon"), values, {**ds["tas"].attrs, "missing_value": np.float32(-1.0e30)})
    ds.to_netcdf(tmp / "missing.nc")
    return xr.open_dataset(tmp / "missing.nc")


def _packed_file(tmp: Path) -> xr.Dataset:
    ds = _small()
    ds.to_netcdf(
        tmp / "packed.nc",
        encoding={"tas": {"dtype": "int16", "scale_factor": 0.01, "add_offset": 280.0, "_FillValue": np.int16(-32768)}},
    )
    with xr.open_dataset(tmp / "packed.nc", mask_and_scale=False) as raw:
        assert raw["tas"].dtype == np.int16
    return xr.open_dataset(tmp / "packed.nc")


def _undecoded(build):
    """The file of ``build`` opened without CF decoding: fill values and packing left in the attributes."""

    def opened(tmp: Path) -> xr.Dataset:
        build(tmp).close()
        path = next(tmp.glob("*.nc"))
        return xr.open_dataset(path, mask_and_scale=False)

    return opened


def _inf_cells(tmp: Path) -> xr.Dataset:
    ds = _small()
    ds["tas"][1, 1] = np.inf
    return ds


def _calendar(name: str):
    def build(tmp: Path) -> xr.Dataset:
        ds = make_dataset("latlon", shape=(8, 8), times=2)
        ds["time"].encoding["calendar"] = name
        ds.to_netcdf(tmp / f"{name}.nc")
        return xr.open_dataset(tmp / f"{name}.nc", decode_times=xr.coders.CFDatetimeCoder(use_cftime=True))

    return build


def _no_units(tmp: Path) -> xr.Dataset:
    ds = _small()
    del ds["tas"].attrs["units"]
    return ds


def _integer_data(tmp: Path) -> xr.Dataset:
    ds = _small()
    ds["tas"] = ds["tas"].round().astype(np.int32)
    return ds


def _single_cell_with_bounds(tmp: Path) -> xr.Dataset:
    ds = _small().isel(lat=[3], lon=[4])
    ds["lat"].attrs["bounds"] = "lat_bnds"
    ds["lon"].attrs["bounds"] = "lon_bnds"
    ds["lat_bnds"] = (("lat", "bnds"), [[-1.0, 1.0]])
    ds["lon_bnds"] = (("lon", "bnds"), [[20.0, 22.0]])
    return ds


def _wrong_bounds_shape(tmp: Path) -> xr.Dataset:
    ds = _small()
    ds["lat"].attrs["bounds"] = "lat_bnds"
    ds["lat_bnds"] = (("lat", "three"), np.zeros((8, 3)))
    return ds


def _bounds_upper_first(tmp: Path) -> xr.Dataset:
    """Ascending latitudes whose bounds give each cell's upper edge first."""
    ds = _small()
    edges = np.concatenate([[-11.0], (ds["lat"].values[1:] + ds["lat"].values[:-1]) / 2, [ds["lat"].values[-1] + 1.0]])
    ds["lat"].attrs["bounds"] = "lat_bnds"
    ds["lat_bnds"] = (("lat", "nv"), np.stack([edges[1:], edges[:-1]], axis=1))
    return ds


def _fine_cells_follow_the_coarse(ds: xr.Dataset, out: xr.Dataset) -> bool:
    """Fine latitudes ascend like the input's, two inside each coarse cell, bounds in order."""
    coarse = np.sort(ds["lat_bnds"].values, axis=1).repeat(2, axis=0)
    fine, fine_bounds = out["lat"].values, out["lat_bnds"].values
    inside = (fine > coarse[:, 0]) & (fine < coarse[:, 1])
    return bool((np.diff(fine) > 0).all() and inside.all() and (fine_bounds[:, 1] > fine_bounds[:, 0]).all())


def _member_dim(tmp: Path) -> xr.Dataset:
    base = make_dataset("latlon", shape=(8, 8), times=2)
    return xr.concat([base, base + 1, base + 2], dim="member").transpose("member", "time", "lat", "lon")


def _global_ring(tmp: Path) -> xr.Dataset:
    ds = make_dataset("latlon", shape=(8, 16))
    return ds.assign_coords(lon=("lon", np.arange(16) * 22.5, ds["lon"].attrs))


def _ring_bounds_modulo_360(tmp: Path) -> xr.Dataset:
    """The global ring with longitude bounds written modulo 360 (the first cell: 348.75, 11.25)."""
    ds = _global_ring(tmp)
    lon = ds["lon"].values
    ds["lon"].attrs["bounds"] = "lon_bnds"
    ds["lon_bnds"] = (("lon", "nv"), np.stack([(lon - 11.25) % 360, (lon + 11.25) % 360], axis=1))
    return ds


def _external_cell_measures(tmp: Path) -> xr.Dataset:
    """CMIP style: cell areas in another file (areacella), of the coarse grid."""
    ds = _small()
    ds["tas"].attrs["cell_measures"] = "area: areacella"
    ds.attrs["external_variables"] = "areacella"
    return ds


def _flagged(tmp: Path) -> xr.Dataset:
    """Temperature with a quality flag variable as its ancillary variable: a category, not refined."""
    ds = _small()
    ds["tas_flag"] = (
        ("lat", "lon"),
        np.zeros((8, 8), "int8"),
        {"flag_values": np.array([0, 1], "int8"), "flag_meanings": "good bad"},
    )
    ds["tas"].attrs["ancillary_variables"] = "tas_flag"
    return ds


def _scaled(factor: float):
    def build(tmp: Path) -> xr.Dataset:
        ds = _small()
        ds["tas"] = (ds["tas"] - 280.0) * factor
        return ds

    return build


def _same_detail_as_ordinary(ds: xr.Dataset, out: xr.Dataset, factor: float) -> bool:
    """The refined field, scaled back, is the one refined at ordinary magnitude."""
    ordinary = ds.copy()
    ordinary["tas"] = ds["tas"] / factor
    reference = pipeline.synthesize(ordinary, factor=2, variables=["tas"])["tas"].values
    return bool(np.allclose(out["tas"].values / factor, reference, rtol=0, atol=1e-4 * np.abs(reference).max()))


def _unknown_standard_name(tmp: Path) -> xr.Dataset:
    ds = _small()
    ds["tas"].attrs["standard_name"] = "unknown"
    return ds


def _xy_in_degrees() -> xr.Dataset:
    """Latitude and longitude named y and x, known only by their units."""
    ds = _small().rename(lat="y", lon="x")
    return ds.assign_coords(
        y=ds["y"].drop_attrs().assign_attrs(units="degrees_north"), x=ds["x"].drop_attrs().assign_attrs(units="degrees_east")
    )


HANDLED = [
    ("fill-value-cells", _fill_value_file, lambda ds, out: np.isnan(out["tas"]).sum() == 4 * 4),
    ("missing-value-attribute", _missing_value_file, lambda ds, out: np.isnan(out["tas"]).sum() == 3 * 4),
    ("packed-int16", _packed_file, lambda ds, out: out["tas"].dtype == np.float32 and "scale_factor" not in out["tas"].attrs),
    (
        "fill-value-not-decoded",
        _undecoded(_fill_value_file),
        lambda ds, out: np.isnan(out["tas"]).sum() == 4 * 4 and float(out["tas"].min()) > 200,
    ),
    (
        "packed-not-decoded",
        _undecoded(_packed_file),
        lambda ds, out: (
            float(out["tas"].min()) > 200 and float(out["tas"].max()) < 400 and "scale_factor" not in out["tas"].attrs
        ),
    ),
    (
        "infinite-cells",
        _inf_cells,
        lambda ds, out: np.isnan(out["tas"]).sum() == 4 and np.isfinite(out["tas"]).sum() == 64 * 4 - 4,
    ),
    ("noleap-calendar", _calendar("noleap"), lambda ds, out: out["time"].values[0].calendar == "noleap"),
    ("360-day-calendar", _calendar("360_day"), lambda ds, out: out["time"].values[0].calendar == "360_day"),
    ("no-units", _no_units, lambda ds, out: "units" not in out["tas"].attrs),
    ("integer-data", _integer_data, lambda ds, out: out["tas"].dtype.kind == "f"),
    (
        "one-cell-domain-with-bounds",
        _single_cell_with_bounds,
        lambda ds, out: out["tas"].shape == (2, 2) and np.allclose(out["lat"], [-0.5, 0.5]),
    ),
    ("bounds-of-wrong-shape", _wrong_bounds_shape, lambda ds, out: out.sizes["lat"] == 16),
    ("bounds-upper-edge-first", _bounds_upper_first, _fine_cells_follow_the_coarse),
    ("member-dimension", _member_dim, lambda ds, out: out["tas"].dims == ("member", "time", "lat", "lon")),
    (
        "descending-latitude",
        lambda tmp: make_dataset("latlon", shape=(8, 8), descending_y=True),
        lambda ds, out: (np.diff(out["lat"]) < 0).all(),
    ),
    (
        "longitude-0-360",
        lambda tmp: make_dataset("latlon", shape=(8, 8), lon_0_360=True),
        lambda ds, out: float(out["lon"].min()) > 180,
    ),
    (
        "data-in-a-group",
        lambda tmp: open_input(_grouped(tmp, ("Grid", "Grid/Intermediate"))),
        lambda ds, out: out["tas"].shape == (16, 16),  # /Grid, the shallowest group, holds tas
    ),
    (
        "curvilinear-grid",
        lambda tmp: make_dataset("curvilinear", shape=(8, 8)),
        lambda ds, out: "y" not in out.coords and out["lat"].shape == (16, 16) and np.isfinite(out["lat"]).all(),
    ),
    (
        "global-longitudes",
        _global_ring,
        lambda ds, out: out.sizes["lon"] == 32 and json.loads(out.attrs["climgen_provenance"])["longitude_wrap_cells"] == 4,
    ),
    (
        "lon-wraps-0-360",
        lambda tmp: _with_lon([354, 356, 358, 0, 2, 4, 6, 8]),
        lambda ds, out: np.allclose(out["lon"][[0, -1]], [-6.5, 8.5]) and (np.diff(out["lon"]) > 0).all(),
    ),
    (
        "xy-in-degrees",
        lambda tmp: _xy_in_degrees(),
        lambda ds, out: out["y"].attrs["standard_name"] == "latitude" and out["x"].attrs["standard_name"] == "longitude",
    ),
    (
        "lon-bounds-modulo-360",
        _ring_bounds_modulo_360,
        lambda ds, out: np.allclose(out["lon_bnds"][0], [-11.25, 0.0]) and (np.diff(out["lon"]) > 0).all(),
    ),
    (
        "grid-mapping-missing",
        lambda tmp: make_dataset("rotated", shape=(8, 8)).drop_vars("rotated_pole"),
        lambda ds, out: (
            "grid_mapping" not in out["tas"].attrs and "'rotated_pole' named by the input" in out["tas"].attrs["comment"]
        ),
    ),
    (
        "cell-measures-of-the-coarse-grid",
        _external_cell_measures,
        lambda ds, out: "cell_measures" not in out["tas"].attrs and "external_variables" not in out.attrs,
    ),
    (
        "ancillary-variable-not-refined",
        _flagged,
        lambda ds, out: out["tas"].attrs["ancillary_variables"].split()[0] == "complexity_score" and "tas_flag" not in out,
    ),
    ("tiny-magnitudes", _scaled(1e-13), lambda ds, out: _same_detail_as_ordinary(ds, out, 1e-13)),
    ("huge-magnitudes", _scaled(1e21), lambda ds, out: _same_detail_as_ordinary(ds, out, 1e21)),
    ("lon-lat-order", lambda tmp: _small().transpose("lon", "lat"), lambda ds, out: out["tas"].dims == ("lon", "lat")),
    ("standard-name-unknown", _unknown_standard_name, lambda ds, out: "standard_name" not in out["tas"].attrs),
    ("tiny-domain", lambda tmp: make_dataset("latlon", shape=(2, 3)), lambda ds, out: out["tas"].shape == (4, 6)),
    (
        "all-missing",
        lambda tmp: _small().where(False),
        lambda ds, out: bool(np.isnan(out["tas"]).all()) and int(out["refinement_depth"].max()) == 0,
    ),
    (
        "constant-field",
        lambda tmp: _small() * 0 + 5,
        lambda ds, out: np.allclose(out["tas"], 5) and int(out["refinement_depth"].max()) == 0,
    ),
]


def test_a_variable_along_one_spatial_axis_only_is_named_in_a_warning():
    ds = _small()
    ds["zonal_mean"] = ("lat", ds["tas"].mean("lon").values)
    with pytest.warns(UserWarning, match=r"\['zonal_mean'\] lie along only one of \(lat, lon\)"):
        out = pipeline.synthesize(ds, factor=2)
    assert "zonal_mean" not in out and "tas" in out


@pytest.mark.parametrize("case, build, check", HANDLED, ids=[case[0] for case in HANDLED])
def test_handled_cases(case, build, check, tmp_path):
    ds = build(tmp_path)
    seam = case == "lon-wraps-0-360"
    expected = {"lon-wraps-0-360": (LongitudeWarning, "-180..180"), "infinite-cells": (InputWarning, "1 infinite value")}
    warned = pytest.warns(expected[case][0], match=expected[case][1]) if case in expected else contextlib.nullcontext()
    with warned:
        out = pipeline.synthesize(ds, factor=2, variables=["tas"])
    assert check(ds, out), case
    if seam:  # the output is on -180..180 longitudes, sorted
        ds = ds.assign_coords(lon=(ds["lon"] + 180) % 360 - 180).sortby("lon")
    if case.endswith("not-decoded"):  # judged against the input as CF decodes it
        ds = xr.decode_cf(ds)
    assert_coarse_consistent(
        out["tas"].astype(np.float64), ds["tas"].astype(np.float64).where(np.isfinite(ds["tas"])), 2, rtol=1e-5
    )


@pytest.mark.parametrize(
    "units, warned",
    [
        ("K", False),
        ("m s-1", False),
        ("kg m-2 s-1", False),
        ("degrees_north", False),
        ("1e-3", False),  # CF's canonical salinity: a scale factor alone
        ("1e-6 kg m-2", False),
        ("Kelvins", True),
        (None, True),
    ],
)
def test_units_are_read_and_checked(units, warned):
    import warnings

    from climgen.io.units import UnitsWarning

    ds = make_dataset("latlon", shape=(8, 8))
    del ds["tas"].attrs["standard_name"]  # units alone: their agreement with a name is tested below
    if units is None:
        del ds["tas"].attrs["units"]
    else:
        ds["tas"].attrs["units"] = units
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = pipeline.synthesize(ds, factor=2)
    messages = [str(w.message) for w in caught if issubclass(w.category, UnitsWarning)]
    assert bool(messages) == warned, messages
    assert out["tas"].attrs.get("units") == units  # carried unchanged


@pytest.mark.parametrize(
    "units, standard_name, warned",
    [
        ("K", "air_temperature", None),
        ("degC", "air_temperature", None),
        ("degrees_C", "sea_surface_temperature", None),
        ("%", "cloud_area_fraction", None),
        ("hPa", "air_pressure", None),
        ("mm", "lwe_thickness_of_precipitation_amount", None),
        ("K", "air_temperature standard_error", None),  # a modifier: only the name is looked up
        ("m", "unknown", None),  # ERA5's placeholder: dropped from the output, not checked
        ("m", "air_temperature", "do not convert to the canonical units 'K'"),
        ("mm/day", "precipitation_flux", "canonical units 'kg m-2 s-1'"),
        ("K", "air_temprature", "'air_temprature' is not in the CF standard name table"),
    ],
)
def test_units_are_checked_against_the_standard_name(units, standard_name, warned):
    """Units that contradict the standard name, and names CF does not have, passed in
    silence; the output then failed `climgen check`."""
    import warnings

    from climgen.io.units import UnitsWarning

    ds = make_dataset("latlon", shape=(8, 8))
    ds["tas"].attrs |= {"units": units, "standard_name": standard_name}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pipeline.synthesize(ds, factor=2)
    messages = [str(w.message) for w in caught if issubclass(w.category, UnitsWarning)]
    if warned is None:
        assert not messages, messages
    else:
        assert len(messages) == 1 and warned in messages[0] and "CF check of the output will fail" in messages[0], messages


def test_the_shipped_standard_name_table_holds_names_and_aliases():
    from climgen.io.units import canonical_units

    table = canonical_units()["canonical_units"]
    assert len(table) > 4000 and table["air_temperature"] == "K" and table["precipitation_flux"] == "kg m-2 s-1"
    assert table["leaf_carbon_content"] == "kg m-2"  # an alias: the name before a rename


@pytest.mark.parametrize("option", [{"budget": True}, {"budget": "0.5"}, {"members": "2"}, {"seed": "1"}, {"tolerance": "0.01"}])
def test_options_are_numbers_not_text_or_booleans(option):
    with pytest.raises(ConfigError, match="must be an? (number|integer)"):
        pipeline.make_config(factor=2, **option)


def test_an_input_realization_is_not_silently_replaced_by_the_members():
    ds = make_dataset("latlon", shape=(8, 8))
    for labelled in (ds.assign_coords(realization=1), ds.assign(realization=ds["tas"])):
        with pytest.raises(InputError, match="drop or rename the input's first"):
            pipeline.synthesize(labelled, factor=2, members=2)
    assert int(pipeline.synthesize(ds.assign_coords(realization=1), factor=2)["realization"]) == 1  # one field: kept


def test_history_states_every_option_that_is_not_the_default():
    ds = make_dataset("latlon", shape=(16, 16))
    history = pipeline.synthesize(ds, factor=2, residual_gain=0.5, tile_size=8, quality=0.99).attrs["history"]
    for text in ("residual_gain=0.5", "tile_size=8", "quality=0.99", "factor=2", "model='default'"):
        assert text in history.splitlines()[0]


@pytest.mark.parametrize("limits", ["01", b"01", (False, True), ("0", "1"), (float("nan"), 1.0)])
def test_bounds_are_numbers_or_none(limits):
    ds = make_dataset("latlon", shape=(8, 8))
    with pytest.raises(ConfigError, match="bounds of 'tas'"):
        pipeline.synthesize(ds, factor=2, bounds={"tas": limits})


def test_infinite_bounds_are_no_limit_and_order_errors_quote_what_was_given():
    import json

    ds = make_dataset("latlon", shape=(8, 8))
    provenance = json.loads(pipeline.synthesize(ds, factor=2, bounds={"tas": (0.0, float("inf"))}).attrs["climgen_provenance"])
    assert provenance["bounds"] == {"tas": [0.0, None]}
    with pytest.raises(ConfigError, match="tasmin,tas,tasmax"):
        pipeline.synthesize(ds, factor=2, order="tasmin,tas,tasmax")


@pytest.mark.parametrize("value", [None, "orog.nc", np.zeros((16, 16))])
def test_a_covariate_that_is_no_data_array_is_an_input_error(value):
    ds = make_dataset("latlon", shape=(8, 8))
    with pytest.raises(InputError, match="must be an xarray DataArray"):
        pipeline.synthesize(ds, factor=2, covariates={"elevation": value})


def test_packed_values_with_a_packed_valid_range_refine_alike_opened_decoded_or_not(tmp_path):
    """A valid range holds packed numbers: opened without decoding, the values are unpacked as
    CF says and the range with them, so the output is the decoded file's, with its detail."""
    ds = _small(times=2)
    ds["tas"].attrs["valid_range"] = np.array([-8000, 8000], dtype=np.int16)  # 200..360 K once unpacked
    encoding = {"tas": {"dtype": "int16", "scale_factor": 0.01, "add_offset": 280.0, "_FillValue": np.int16(-32768)}}
    ds.to_netcdf(tmp_path / "packed.nc", encoding=encoding)
    with xr.open_dataset(tmp_path / "packed.nc") as decoded, xr.open_dataset(tmp_path / "packed.nc", mask_and_scale=False) as raw:
        with warnings.catch_warnings():
            warnings.simplefilter("error", PhysicalBoundsWarning)  # no value is outside 200..360 K
            expected = pipeline.synthesize(decoded, factor=2, seed=1)
            got = pipeline.synthesize(raw, factor=2, seed=1)
    np.testing.assert_array_equal(got["tas"].values, expected["tas"].values)


@pytest.mark.parametrize("value", [[1, 2], 5])
def test_covariates_that_are_no_mapping_are_a_config_error(value):
    ds = make_dataset("latlon", shape=(8, 8))
    with pytest.raises(ConfigError, match="covariates must be a mapping of names to DataArrays"):
        pipeline.synthesize(ds, factor=2, covariates=value)


def test_unmarked_fill_values_in_a_step_the_plan_does_not_read_stop_the_streamed_job(tmp_path):
    from climgen import streaming

    ds = _unmarked_fill_values(times=6)
    values = ds["tas"].values.copy()
    values[[0, 2, 3, 4, 5], 0, :3] = 280.0  # only step 1 holds them: the self-tests read 0, 2, 3 and 5
    ds["tas"].values[:] = values
    options = streaming.StreamOptions(region_tiles=2, progress=False)
    with pytest.raises(InputError, match="probably missing values the file does not mark"):
        streaming.run(ds, tmp_path / "out.zarr", pipeline.make_config(factor=2), options=options)
    assert not list(tmp_path.iterdir()), "refused as the job is planned: no partial job to block the masked rerun"


def test_detail_lost_to_float32_on_a_large_offset_is_said():
    """Geopotential anomalies stored as totals in float64: float32 rounding at 5e5 is most of
    their spread, so the output could not hold them; said, with the offset to take away."""
    ds = make_dataset("latlon", shape=(16, 16), times=1).astype("float64")
    ds["tas"] = 5e5 + 0.01 * (ds["tas"] - 280.0)
    with pytest.warns(InputWarning, match=r"rounding at its magnitude .* refine the anomaly from an offset instead"):
        pipeline.synthesize(ds, factor=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error", InputWarning)
        pipeline.synthesize(ds.assign(tas=ds["tas"] - 5e5), factor=2)
    # an accumulation's first step is often missing: the next step with values is judged
    series = make_dataset("latlon", shape=(16, 16), times=2).astype("float64")
    series["tas"] = 5e5 + 0.01 * (series["tas"] - 280.0)
    series["tas"][0] = np.nan
    with pytest.warns(InputWarning, match=r"rounding at its magnitude"):
        pipeline.synthesize(series, factor=2)


def test_warnings_point_at_the_user_s_line_not_climgen_s():
    """In a notebook, a warning names the cell's line that called climgen, not climgen's source."""
    ds = make_dataset("latlon", shape=(16, 16), times=1)
    del ds["tas"].attrs["units"]
    with pytest.warns(UserWarning) as record:
        ds.climgen.synthesize(factor=2)
    assert record and all(warning.filename == __file__ for warning in record), [w.filename for w in record]


def test_empty_variables_are_refused_and_non_numeric_fields_are_left_by_the_default():
    ds = make_dataset("latlon", shape=(16, 16), times=1)
    with pytest.raises(ConfigError, match="variables: is empty"):
        pipeline.synthesize(ds, factor=2, variables=[])
    ds["landmask"] = (("lat", "lon"), np.ones((16, 16), dtype=bool))
    with pytest.warns(InputWarning, match="landmask"):  # the boolean mask is no field to refine, and is said so
        assert "tas" in pipeline.synthesize(ds, factor=2).data_vars
    with pytest.raises(InputError, match="'landmask' is not numeric"):
        pipeline.synthesize(ds, factor=2, variables=["landmask"])
    assert ds.climgen.complexity(factor=2, variables="tas").ndim == 2  # names as synthesize takes them


def test_assert_coarse_consistent_takes_data_arrays_or_one_variable_datasets():
    from climgen.testing import assert_coarse_consistent

    coarse = make_dataset("latlon", shape=(8, 8))[["tas"]]
    fine = pipeline.synthesize(coarse, factor=2)
    assert_coarse_consistent(fine[["tas"]], coarse, 2)  # one-variable Datasets stand for their variable
    with pytest.raises(TypeError, match="the fine Dataset holds .*pass one variable"):
        assert_coarse_consistent(fine, coarse["tas"], 2)
    with pytest.raises(TypeError, match="must be an xarray DataArray .*not a ndarray"):
        assert_coarse_consistent(fine["tas"].values, coarse["tas"], 2)


def test_infinite_cells_are_missing_cells_for_the_depth_too(tmp_path):
    """±inf was missing in the refinement but data in the self-tests that choose the depth:
    three infinite cells of January took the demo's octave ratio from 0.22 to 1.00, and so
    changed every month's values (by up to 1 K). Infinite cells now give what NaN cells give,
    in memory and streamed."""
    from importlib import resources

    from climgen import streaming

    with xr.open_dataset(str(resources.files("climgen") / "data" / "africa_tas_monthly_2005.nc")) as opened:
        ds = opened.isel(time=slice(0, 4)).load()
    missing, infinite = ds.copy(deep=True), ds.copy(deep=True)
    missing["tas"][0, 10:13, 20] = np.nan
    infinite["tas"][0, 10:12, 20] = np.inf
    infinite["tas"][0, 12, 20] = -np.inf
    expected = missing.climgen.synthesize(factor=4, seed=1)
    with pytest.warns(InputWarning, match="3 infinite value"):
        result = infinite.climgen.synthesize(factor=4, seed=1)
    policies = [json.loads(out.attrs["climgen_provenance"])["depth_policy"] for out in (result, expected)]
    assert policies[0] == policies[1]
    assert np.array_equal(result["tas"].values, expected["tas"].values, equal_nan=True)
    infinite.to_netcdf(tmp_path / "inf.nc")
    with xr.open_dataset(tmp_path / "inf.nc") as opened, pytest.warns(InputWarning):
        streaming.run(opened, tmp_path / "out.zarr", pipeline.make_config(factor=4, seed=1))
    with xr.open_zarr(tmp_path / "out.zarr") as streamed:
        assert np.array_equal(streamed["tas"].values, expected["tas"].values, equal_nan=True)

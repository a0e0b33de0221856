"""Both CF checkers, offline, on every kind of output."""

import re
import shutil
import uuid

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import climgen
from climgen.io.cf import ANCILLARY_NAMES, refined_variables
from climgen.io.encoding import encoding_for
from climgen.io.input_attrs import restate_grid
from climgen.io.write import write_dataset
from climgen.testing import make_dataset

checks = pytest.importorskip("climgen.io.checks")


def _write(result, path):
    write_dataset(result, path, encoding_for(result, refined_variables(result), (64, 64)))
    return path


def _assert_clean(path, allowed_warning: str | None = None):
    for result in checks.run_checks(path):
        warnings = [message for message in result.messages if allowed_warning is None or allowed_warning not in message]
        assert result.errors == 0 and (result.warnings == 0 or not warnings), result.summary()


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


@pytest.mark.parametrize("kind", ["latlon", "rotated", "projected", "curvilinear"])
def test_each_grid_kind_is_cf_clean(kind, tmp_path, checker_ready):
    ds = make_dataset(kind, shape=(12, 16), times=3)
    # bare (y, x) dimensions, as a curvilinear input has them, are not recognised as Y and X by
    # compliance-checker's recommended-order test (a warning the input gets too)
    allowed = "recommended order T, Z, Y, X" if kind == "curvilinear" else None
    path = _write(ds.climgen.synthesize(factor=2), tmp_path / f"{kind}.nc")
    _assert_clean(path, allowed)
    assert not {name for name, weight in _acdd_failures(path) if weight == 3}  # ACDD: the axes have long names


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
            # the input file's own id and date are not this file's (CMIP: tracking_id is unique per file)
            assert "tracking_id" not in out.attrs and out.attrs["climgen_input_tracking_id"] == ds.attrs["tracking_id"]
            assert out.attrs["creation_date"] > ds.attrs["creation_date"]
            for name in ("lat", "lon", "lat_bnds", "lon_bnds", "time"):
                assert "_FillValue" not in out[name].encoding


def test_an_output_refined_again_or_coarsened_keeps_what_it_was_made_from(tmp_path, climgen_cli):
    """Refined again, an output named its grandparent's CMIP tracking id as its input's and
    lost the first refinement's provenance; coarsened, it lost every record of climgen."""
    import json
    from importlib import resources

    sample = str(resources.files("climgen") / "data" / "africa_tas_monthly_2005.nc")
    for source, output in ((sample, "once.nc"), ("once.nc", "twice.nc")):
        assert climgen_cli("synthesize", source, tmp_path / output, "--factor", 2, cwd=tmp_path).returncode == 0
    assert climgen_cli("coarsen", "once.nc", "back.nc", "--factor", 2, cwd=tmp_path).returncode == 0
    with xr.open_dataset(tmp_path / "once.nc") as once, xr.open_dataset(tmp_path / "twice.nc") as twice:
        parent = json.loads(twice.attrs["climgen_provenance"])["input_dataset"]
        assert parent["id"] == once.attrs["id"] and parent["climgen_provenance"]["factor"] == 2
        assert parent["climgen_input_tracking_id"] == once.attrs["climgen_input_tracking_id"]
        assert "climgen_input_tracking_id" not in twice.attrs  # its input, once.nc, has no tracking_id
        assert twice.attrs["processing_level"].endswith(", of a field refined x2 by climgen before (x4 in all)")
        with xr.open_dataset(tmp_path / "back.nc") as back:
            assert back.attrs["climgen_version"] == climgen.__version__
            assert json.loads(back.attrs["climgen_coarsened_from"])["id"] == once.attrs["id"]


def test_bounds_attributes_naming_dropped_variables_are_removed(tmp_path, checker_ready):
    """A dataset assembled from parts often keeps ``bounds: time_bnds`` on its time axis
    without the time_bnds variable; the output must not point at a variable it lacks."""
    ds = make_dataset("latlon", shape=(8, 8), times=2)
    ds["time"].attrs["bounds"] = "time_bnds"
    path = _write(ds.climgen.synthesize(factor=2), tmp_path / "dangling.nc")
    _assert_clean(path)
    with xr.open_dataset(path, decode_times=False) as out:
        assert "bounds" not in out["time"].attrs


def test_64_bit_integers_from_the_input_are_written_as_32_bit(tmp_path, checker_ready):
    """xarray stores a scalar ``0`` (the usual grid-mapping variable) and integer metadata as
    int64, which CF-1.8 does not allow; the output must still pass both checkers."""
    ds = make_dataset("projected", shape=(8, 8), times=2)
    ds["crs"] = xr.DataArray(np.int64(0), attrs=ds["crs"].attrs)
    ds["ensemble_size"] = xr.DataArray(np.int64(50), attrs={"long_name": "members in the source ensemble"})
    source = tmp_path / "int64.nc"
    ds.to_netcdf(source)
    with xr.open_dataset(source) as opened:
        assert opened["crs"].dtype == np.int64
        path = _write(opened.climgen.synthesize(factor=2), tmp_path / "out.nc")
    _assert_clean(path)
    with xr.open_dataset(path) as out:
        assert out["crs"].dtype == np.int32
        assert out["ensemble_size"].dtype == np.int32 and int(out["ensemble_size"]) == 50
        assert out["crs"].attrs["grid_mapping_name"] == "lambert_conformal_conic"


def test_era5_style_metadata_gives_a_clean_output(tmp_path, checker_ready):
    """ERA5 files say ``standard_name: unknown`` and carry ``expver`` as a string coordinate;
    neither may make the output fail CF (no such name; no netCDF-4 vlen strings in CF-1.8)."""
    ds = make_dataset("latlon", shape=(8, 8), times=2)
    ds["tas"].attrs["standard_name"] = "unknown"
    ds = ds.assign_coords(expver=("time", ["0001", "0005"]))
    path = _write(ds.climgen.synthesize(factor=2), tmp_path / "era5.nc")
    _assert_clean(path)
    with xr.open_dataset(path) as out:
        assert "standard_name" not in out["tas"].attrs and "unknown" in out["tas"].attrs["comment"]
        assert list(out["expver"].values.astype(str)) == ["0001", "0005"]


def test_axes_found_by_name_alone_get_their_standard_names(tmp_path, checker_ready):
    ds = make_dataset("latlon", shape=(8, 8))
    for name in ("lat", "lon"):
        ds[name].attrs = {}
    path = _write(ds.climgen.synthesize(factor=2), tmp_path / "bare-axes.nc")
    _assert_clean(path)
    with xr.open_dataset(path) as out:
        assert out["lat"].attrs["standard_name"] == "latitude" and out["lon"].attrs["units"] == "degrees_east"


def test_noleap_calendar_is_kept(tmp_path, checker_ready):
    ds = make_dataset("latlon", shape=(8, 8), times=2)
    path = _write(ds.climgen.synthesize(factor=2), tmp_path / "noleap.nc")
    _assert_clean(path)
    with xr.open_dataset(path, decode_times=xr.coders.CFDatetimeCoder(use_cftime=True)) as out:
        assert out["time"].encoding["calendar"] == "noleap"


def test_check_command_passes_clean_and_fails_broken_files(tmp_path, checker_ready, climgen_cli):
    clean = _write(make_dataset("latlon", shape=(8, 8)).climgen.synthesize(factor=2), tmp_path / "clean.nc")
    result = climgen_cli("check", clean)
    assert result.returncode == 0 and result.stdout.count("PASS") == 2, result.stdout
    discovery = climgen_cli("check", clean, "--acdd")  # who made the data is not stated: warnings, not errors
    assert discovery.returncode == 0 and "compliance-checker acdd:1.3: PASS (0 errors" in discovery.stdout
    assert "creator_name not present" in discovery.stdout
    broken = make_dataset("latlon", shape=(8, 8))
    broken["tas"].attrs["standard_name"] = "not_a_cf_standard_name"
    broken.to_netcdf(tmp_path / "broken.nc")
    result = climgen_cli("check", tmp_path / "broken.nc")
    assert result.returncode == 1 and "FAIL" in result.stdout
    assert "not_a_cf_standard_name" in result.stdout


def test_coarsened_truth_is_cf_clean(tmp_path, checker_ready, climgen_cli):
    from importlib import resources

    truth = resources.files("climgen") / "data" / "africa_tas_monthly_2005.nc"
    assert climgen_cli("coarsen", str(truth), tmp_path / "coarse.nc", "--factor", 2).returncode == 0
    _assert_clean(tmp_path / "coarse.nc")
    with xr.open_dataset(tmp_path / "coarse.nc") as coarse:
        assert coarse["tas"].attrs["cell_methods"].startswith("time: mean area: mean")
        assert "tracking_id" not in coarse.attrs  # the truth file's unique id is not the coarse file's


def test_coarsened_wrf_style_truth_is_cf_clean(tmp_path, checker_ready, climgen_cli):
    """XLAT/XLONG known by name only and no title: coarsen still writes a CF-clean file."""
    ds = make_dataset("curvilinear", shape=(8, 8), times=2).rename({"lat": "XLAT", "lon": "XLONG"})
    ds["XLAT"].attrs, ds["XLONG"].attrs = {"units": "degree_north"}, {"units": "degree_east"}
    del ds.attrs["title"]
    ds.to_netcdf(tmp_path / "wrfout.nc")
    assert climgen_cli("coarsen", tmp_path / "wrfout.nc", tmp_path / "coarse.nc", "--factor", 2).returncode == 0
    _assert_clean(tmp_path / "coarse.nc", "recommended order T, Z, Y, X")
    with xr.open_dataset(tmp_path / "coarse.nc") as coarse:
        assert coarse["XLAT"].attrs["standard_name"] == "latitude" and "coarsen" in coarse.attrs["title"]


def test_zarr_output_carries_the_same_metadata(hsurf_coarse, tmp_path):
    result = hsurf_coarse.climgen.synthesize(factor=2)
    write_dataset(result, tmp_path / "out.zarr", encoding_for(result, refined_variables(result), (64, 64), netcdf=False))
    assert (tmp_path / "out.zarr" / "zarr.json").exists() or (tmp_path / "out.zarr" / ".zmetadata").exists()
    with xr.open_zarr(tmp_path / "out.zarr", consolidated=True) as ds:
        assert ds.attrs["Conventions"] == "CF-1.8, ACDD-1.3"
        assert ds["HSURF"].attrs["grid_mapping"] == "rotated_pole"
        assert ds["HSURF"].attrs["ancillary_variables"] == "complexity_score predicted_gain refinement_depth refinement_macs"
        assert ds["rlat"].attrs["bounds"] == "rlat_bnds" and "lat" in ds.coords
        assert ds.attrs["climgen_model_sha256"] == result.attrs["climgen_model_sha256"]


STANDING = {  # who made and publishes the data: only the user can say
    "creator_name": "A. Scientist",
    "creator_url": "https://example.org/a-scientist",
    "creator_email": "a.scientist@example.org",
    "publisher_name": "Example Climate Centre",
    "publisher_url": "https://example.org",
    "publisher_email": "data@example.org",
    "project": "Example downscaling study",
}


def _acdd_failures(path) -> set[tuple[str, int]]:
    """(check, weight) of every IOOS ACDD-1.3 check that ``path`` fails (3 high, 2 medium, 1 low)."""
    import json

    report = checks.subprocess.run(
        [
            str(checks.Path(checks.sys.executable).with_name("compliance-checker")),
            "--test=acdd",
            "--format=json",
            "-o",
            "-",
            str(path),
        ],
        capture_output=True,
        text=True,
    )
    scored = json.loads(report.stdout)["acdd"]
    return {
        (entry["name"], entry["weight"])
        for entry in scored["all_priorities"]
        if entry["value"][0] < entry["value"][1] and entry["weight"] > 1
    }


def test_a_scalar_time_gives_the_time_coverage_of_one_instant():
    ds = make_dataset("latlon", shape=(8, 8), times=1).isel(time=0)  # time kept as a scalar coordinate
    attrs = ds.climgen.synthesize(factor=2).attrs
    assert attrs["time_coverage_start"] == attrs["time_coverage_end"] and attrs["time_coverage_duration"] == "PT0S"


def test_a_scalar_time_is_named_as_time_and_the_output_is_clean(tmp_path, checker_ready):
    ds = make_dataset("latlon", shape=(8, 8), times=1).isel(time=0)
    result = ds.climgen.synthesize(factor=2)
    assert result["time"].attrs["standard_name"] == "time" and "axis" not in result["time"].attrs
    path = _write(result, tmp_path / "scalar.nc")
    _assert_clean(path)
    assert "time" not in {name for name, weight in _acdd_failures(path) if weight == 3}


def test_attributes_netcdf_cannot_store_are_made_storable_before_any_work(tmp_path):
    """A zarr input may hold None, booleans and mappings as attributes: the NetCDF output of a
    streamed job (written at its very end) and of coarsen take them as text and numbers."""
    from climgen import pipeline, streaming
    from climgen.io.cf import storable_attributes

    ds = make_dataset("latlon", shape=(16, 16), times=2)
    ds.attrs |= {"step": {"hours": 1}, "flag": True, "nothing": None, "mixed": [1, "a"]}
    ds["tas"].attrs |= {"extra": None, "climgen_job": "0123"}
    ds.to_zarr(tmp_path / "in.zarr")
    with xr.open_zarr(tmp_path / "in.zarr") as opened:
        streaming.run(
            opened, tmp_path / "out.nc", pipeline.make_config(factor=2), options=streaming.StreamOptions(progress=False)
        )
    with xr.open_dataset(tmp_path / "out.nc") as out:
        assert out.attrs["step"] == '{"hours": 1}' and out.attrs["flag"] == 1 and "nothing" not in out.attrs
        assert out.attrs["mixed"] == '[1, "a"]' and "extra" not in out["tas"].attrs
    assert storable_attributes(xr.Dataset(attrs={"kept": [1.0, 2.0], "names": ["a", "b"]})).attrs == {
        "kept": [1.0, 2.0],
        "names": ["a", "b"],
    }


def test_cmip_grid_attributes_are_dropped_and_discovery_attributes_added(tmp_path, checker_ready):
    """grid_type ("gaussian") and associated_files (the coarse grid's areacella) no longer hold
    for the refined grid: dropped and named in the comment. ACDD-1.3 attributes say what the
    file holds; the IOOS ACDD check finds only what climgen cannot know (who made and licenses
    the data), and nothing once the user states it."""
    from importlib import resources

    sample = resources.files("climgen") / "data" / "africa_tas_monthly_2005.nc"
    with xr.open_dataset(str(sample)) as ds:
        assert ds["tas"].attrs["grid_type"] == "gaussian"
        result = ds.climgen.synthesize(factor=2, variables=["tas"])
    tas = result["tas"].attrs
    assert "grid_type" not in tas and "associated_files" not in tas
    assert "grid_type 'gaussian', associated_files" in tas["comment"] and "areacella" in tas["comment"]
    assert "of the input dropped: they describe the coarse grid" in tas["comment"]
    assert tas["coverage_content_type"] == "modelResult"
    attrs = result.attrs
    assert attrs["Conventions"] == "CF-1.8, ACDD-1.3"
    assert "air temperature" in attrs["keywords"] and "downscaling" in attrs["keywords"]
    assert "refined x2 by climgen" in attrs["summary"]
    assert attrs["time_coverage_start"].startswith("2005-01-16") and attrs["time_coverage_resolution"] == "P1M"
    assert attrs["geospatial_lat_min"] == pytest.approx(float(result["lat"].min()))
    assert attrs["institution"] == "Max Planck Institute for Meteorology"  # carried, not invented
    assert str(uuid.UUID(attrs["id"])) == attrs["id"] and attrs["naming_authority"] == "climgen"
    assert set(result["tas"].coords) >= set(ANCILLARY_NAMES)  # the maps travel with the variable
    path = _write(result, tmp_path / "tas.nc")
    _assert_clean(path)  # CF stays clean
    failed = _acdd_failures(path)
    assert {weight for _, weight in failed} == {2}  # no high: the maps are coordinates, not data without a standard name
    assert not any("extents_match" in name or "date_created" in name for name, _ in failed)
    stated = STANDING | {
        "license": "CC-BY-4.0",
        "id": "example-tas-x2",
        "naming_authority": "org.example",
        "acknowledgment": "MPI-M for the CMIP5 run",
        "comment": "a test of the discovery attributes",
    }
    height = xr.DataArray(
        2.0, attrs={"standard_name": "height", "long_name": "height", "units": "m", "axis": "Z", "positive": "up"}
    )
    with xr.open_dataset(str(sample)) as ds:  # CMIP's tas has a scalar 2 m height; the sample lost it
        described = ds.assign_coords(height=height).climgen.synthesize(factor=2, variables=["tas"], attributes=stated)
    assert {key: described.attrs[key] for key in stated} == stated
    assert described.attrs["geospatial_vertical_min"] == described.attrs["geospatial_vertical_max"] == 2.0
    assert described.attrs["geospatial_vertical_positive"] == "up"
    assert described.attrs["geospatial_bounds_vertical_crs"].startswith('VERTCRS["height above the surface"')
    assert not _acdd_failures(_write(described, tmp_path / "described.nc"))  # 0 high, 0 medium


def test_demo_output_with_standing_attributes_passes_acdd(tmp_path, monkeypatch, checker_ready, climgen_cli):
    """What only the user can say (who made and publishes the data), stated once in the standing
    attributes file, completes the demo's ACDD record: 0 high, 0 medium. Without it, the demo's
    output misses exactly those attributes."""

    import yaml

    def demo(out):
        assert climgen_cli("demo", "--out", out, "--factor", "2").returncode == 0
        return out / "africa_tas_x2.nc"

    bare = demo(tmp_path / "bare")
    assert _acdd_failures(bare) == {("Global Attributes", 2)}  # the checker's group of recommended attributes
    with xr.open_dataset(bare) as ds:
        assert not set(STANDING) & set(ds.attrs) and ds.attrs["naming_authority"] == "climgen"
    standing = tmp_path / "attributes.yaml"
    standing.write_text(yaml.safe_dump(STANDING))
    monkeypatch.setenv("CLIMGEN_ATTRIBUTES", str(standing))
    described = demo(tmp_path / "described")
    with xr.open_dataset(described) as ds:
        assert {key: ds.attrs[key] for key in STANDING} == STANDING
        assert ds.attrs["geospatial_vertical_min"] == 2.0
    assert not _acdd_failures(described)


def test_a_bad_standing_attributes_file_is_a_clear_error_before_any_work(tmp_path, monkeypatch):
    from climgen.errors import ConfigError

    ds = make_dataset("latlon", shape=(8, 8), times=1)
    monkeypatch.setenv("CLIMGEN_ATTRIBUTES", str(tmp_path / "missing.yaml"))
    with pytest.raises(ConfigError, match="missing.yaml, which is not a file"):
        ds.climgen.synthesize(factor=2)
    standing = tmp_path / "attributes.yaml"
    for text, message in (
        ("- a list", "must be a mapping"),
        ("history: mine", "'history' is climgen's to write"),
        ("creator_name: [A, B]", "must be text or a number"),
        ("creator_name: 'unclosed", "is not valid YAML at line 1, column 24: found unexpected end of stream"),
        ("a: [1", "is not valid YAML at line 1, column 6: expected ',' or ']', but got '<stream end>'"),
    ):
        standing.write_text(text)
        monkeypatch.setenv("CLIMGEN_ATTRIBUTES", str(standing))
        with pytest.raises(ConfigError, match=re.escape(message)) as refused:
            ds.climgen.synthesize(factor=2)
        assert "\n" not in str(refused.value)
    standing.write_text("creator_name: A. Scientist\nlicense: CC-BY-4.0\n")
    stated = ds.climgen.synthesize(factor=2, attributes={"license": "CC0-1.0"})  # a run's own attributes win
    assert stated.attrs["creator_name"] == "A. Scientist" and stated.attrs["license"] == "CC0-1.0"
    assert '"creator_name": "A. Scientist"' in stated.attrs["climgen_provenance"]  # recorded with the run


def test_standing_attributes_are_read_from_the_user_config_folder(tmp_path, monkeypatch):
    from climgen.io.acdd import attributes_file, standing_attributes

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert attributes_file() == tmp_path / "climgen" / "attributes.yaml" and standing_attributes() == {}
    attributes_file().parent.mkdir()
    attributes_file().write_text("creator_name: A. Scientist\n")
    assert standing_attributes() == {"creator_name": "A. Scientist"}


def test_an_in_memory_result_written_with_xarray_is_cf_clean(tmp_path, checker_ready):
    # the notebooks' way: ds.climgen.synthesize(...).to_netcdf(path), no climgen writer
    result = make_dataset("latlon", shape=(8, 8), times=2).climgen.synthesize(factor=2)
    result.to_netcdf(tmp_path / "plain.nc")
    _assert_clean(tmp_path / "plain.nc")
    result.to_zarr(tmp_path / "plain.zarr")  # the same encoding suits zarr
    with xr.open_zarr(tmp_path / "plain.zarr") as reopened:
        assert np.array_equal(reopened["tas"].values, result["tas"].values, equal_nan=True)


def test_the_checkers_are_not_run_on_what_they_cannot_read(tmp_path):
    from climgen.errors import InputError

    (tmp_path / "notes.nc").write_text("not NetCDF")
    with pytest.raises(InputError, match="cannot read .*notes.nc as NetCDF"):
        checks.run_checks(tmp_path / "notes.nc")
    (tmp_path / "out.zarr").mkdir()
    with pytest.raises(InputError, match="is a folder"):
        checks.run_checks(tmp_path / "out.zarr")


def test_an_input_grid_description_is_restated_or_dropped_and_the_acdd_extent_crosses_the_antimeridian():
    """WRF's grid spacing and sizes follow the refined grid (tools rebuild the grid from them);
    cfgrib's description of the GRIB grid is dropped; the summary counts the output's cells; a
    domain across 180 degrees has west > east."""
    ds = make_dataset("curvilinear", shape=(16, 24))
    rows, cols = np.mgrid[0:16, 0:24].astype(float)
    lon = (155 + 50 * cols / 23 + 0.1 * rows + 180) % 360 - 180  # 155 E to 155 W, stored in -180..180
    ds = ds.assign_coords(lon=(ds["lon"].dims, lon, ds["lon"].attrs))
    ds.attrs |= {"DX": np.float32(12000.0), "DY": np.float32(12000.0), "WEST-EAST_GRID_DIMENSION": 25}
    ds.attrs |= {"SOUTH-NORTH_GRID_DIMENSION": 17, "WEST-EAST_PATCH_END_UNSTAG": 24}
    ds["tas"].attrs |= {"GRIB_Nx": 24, "GRIB_DxInMetres": 12000, "GRIB_iDirectionIncrementInDegrees": 1.3, "GRIB_units": "K"}
    result = ds.climgen.synthesize(factor=2)
    assert (result.attrs["DX"], result.attrs["DY"]) == (6000.0, 6000.0)
    assert (result.attrs["WEST-EAST_GRID_DIMENSION"], result.attrs["SOUTH-NORTH_GRID_DIMENSION"]) == (49, 33)
    assert "WEST-EAST_PATCH_END_UNSTAG" not in result.attrs
    assert not {"GRIB_Nx", "GRIB_DxInMetres"} & set(result["tas"].attrs) and result["tas"].attrs["GRIB_units"] == "K"
    assert "GRIB_iDirectionIncrementInDegrees 1.3 of the input dropped" in result["tas"].attrs["comment"]
    assert "from 16 x 24 cells to 32 x 48" in result.attrs["summary"]
    west, east = result.attrs["geospatial_lon_min"], result.attrs["geospatial_lon_max"]
    assert 150 < west < 160 and -160 < east < -150  # across the antimeridian, not -180..180
    # a region across 180 degrees stored on 0..360 is given on -180..180 too
    pacific = make_dataset("latlon", shape=(8, 8)).assign_coords(lon=np.arange(8) * 10.0 + 145.0)
    extent = pacific.climgen.synthesize(factor=2).attrs
    assert (extent["geospatial_lon_min"], extent["geospatial_lon_max"]) == (142.5, -142.5)
    # its bounds are two boxes that meet at the antimeridian: WKT has no longitude past 180
    assert extent["geospatial_bounds"].startswith("MULTIPOLYGON (((")
    boxes = [
        [float(point.split()[1]) for point in part.strip("()").split(", ")]
        for part in extent["geospatial_bounds"][len("MULTIPOLYGON (") : -1].split(")), ((")
    ]
    assert [(min(box), max(box)) for box in boxes] == [(142.5, 180.0), (-180.0, -142.5)]
    # a global grid stored 21..381 (COADS) is stated on -180..180 too
    shifted = make_dataset(shape=(8, 32)).assign_coords(lon=np.linspace(21, 381, 32, endpoint=False))
    attrs = shifted.climgen.synthesize(factor=2).attrs
    assert -180 <= attrs["geospatial_lon_min"] < -170 and 170 < attrs["geospatial_lon_max"] <= 180
    assert attrs["geospatial_bounds"].startswith("POLYGON ((")
    # coarsened: the sizes of the grid written (a trailing row or column left out counts)
    assert restate_grid({"DX": 3000.0, "WEST-EAST_GRID_DIMENSION": 103}, 4, (10, 25)) == {
        "DX": 12000.0,
        "WEST-EAST_GRID_DIMENSION": 26,
    }
    assert restate_grid({"DX": "25 km"}, 0.25, (40, 40)) == {"DX": "25 km"}  # not WRF's: as it was

    wide = make_dataset(shape=(12, 32))  # a global grid, widened by a few columns to refine
    wide = wide.assign_coords(lon=np.linspace(-180, 180, 32, endpoint=False))
    refined = wide.climgen.synthesize(factor=2)
    assert "from 12 x 32 cells to 24 x 64" in refined.attrs["summary"] and refined.sizes["lon"] == 64


def test_acdd_extent_of_axes_named_latitude_and_longitude():
    """ERA5 names its axes latitude/longitude: the output's extent is stated as for lat/lon."""
    ds = make_dataset(shape=(16, 16)).rename(lat="latitude", lon="longitude")
    attrs = ds.climgen.synthesize(factor=2).attrs
    assert attrs["geospatial_lat_min"] < -10 < 10 < attrs["geospatial_lat_max"]
    assert attrs["geospatial_lon_min"] < 10 < 40 < attrs["geospatial_lon_max"]
    assert attrs["geospatial_bounds"].startswith("POLYGON ((")


def test_variables_with_a_standard_name_alone_get_a_long_name_from_it():
    """ACDD wants a long name on every variable: one with only a standard name (Levitus's
    temperature and depth) gets it in words; one with a long name keeps its own."""
    ds = make_dataset("latlon", shape=(16, 16), times=1)
    ds["tas"].attrs = {"standard_name": "sea_water_temperature", "units": "K"}
    ds["lat"].attrs["long_name"] = "the model's latitude"
    fine = ds.climgen.synthesize(factor=2)
    assert fine["tas"].attrs["long_name"] == "sea water temperature"
    assert fine["lat"].attrs["long_name"] == "the model's latitude"


def test_the_input_s_member_number_is_kept_apart_from_the_members_drawn():
    """CMIP's ``realization`` attribute numbers the input's one member; an output with a
    realization dimension of its own keeps it under another name, so the two do not disagree."""
    ds = make_dataset("latlon", shape=(8, 8))
    ds.attrs |= {"realization": 1, "realization_index": 1, "variant_label": "r1i1p1f1"}
    members = ds.climgen.synthesize(factor=2, members=3, seed=1)
    assert "realization" not in members.attrs and members.attrs["climgen_input_realization"] == 1
    assert members.attrs["climgen_input_realization_index"] == 1 and members.attrs["variant_label"] == "r1i1p1f1"
    assert ds.climgen.synthesize(factor=2).attrs["realization"] == 1

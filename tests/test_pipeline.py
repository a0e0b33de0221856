"""synthesize(): grid, consistency, determinism, adaptivity, bad input, metadata."""

import json
import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from climgen import pipeline
from climgen.depth import gain
from climgen.depth.compute import window_cells
from climgen.errors import ConfigError, GridError, InputError, InputWarning
from climgen.grid import coarsen_dataset, find_spatial_axes
from climgen.testing import assert_coarse_consistent, make_dataset


@pytest.fixture(scope="module")
def refined_hsurf(hsurf_coarse):
    return pipeline.synthesize(hsurf_coarse, factor=4, seed=3)


def test_returns_the_truth_grid_exactly(refined_hsurf, hsurf_truth):
    for name in ("rlat", "rlon"):
        np.testing.assert_allclose(refined_hsurf[name].values, hsurf_truth[name].values, atol=1e-5)
    np.testing.assert_allclose(refined_hsurf["lat"].values, hsurf_truth["lat"].values, atol=1e-4)
    np.testing.assert_allclose(refined_hsurf["lon"].values, hsurf_truth["lon"].values, atol=1e-4)
    assert refined_hsurf["HSURF"].dims == hsurf_truth["HSURF"].dims
    assert refined_hsurf["HSURF"].attrs["units"] == "m"
    assert refined_hsurf["HSURF"].attrs["grid_mapping"] == "rotated_pole"
    assert "rotated_pole" in refined_hsurf


def test_is_coarse_consistent(refined_hsurf, hsurf_coarse):
    assert_coarse_consistent(refined_hsurf["HSURF"], hsurf_coarse["HSURF"], 4)


def test_depth_map_varies_over_mixed_terrain(refined_hsurf, hsurf_coarse):
    """Tiles in separate windows keep their own depth; in shared windows (the default, one
    group on this small domain) they take the window's."""
    separate = pipeline.synthesize(hsurf_coarse, factor=4, seed=3, merge_tiles=1)["refinement_depth"]
    assert separate.dtype == np.int8 and len(np.unique(separate)) > 1
    depth = refined_hsurf["refinement_depth"]
    assert set(np.unique(depth)) <= {0, 1, 2}
    assert "refinement_depth" in refined_hsurf["HSURF"].attrs["ancillary_variables"]


def test_same_seed_is_bit_identical(refined_hsurf, hsurf_coarse):
    again = pipeline.synthesize(hsurf_coarse, factor=4, seed=3)
    np.testing.assert_array_equal(again["HSURF"].values, refined_hsurf["HSURF"].values)


def test_beats_bicubic_on_a_held_out_real_field(refined_hsurf, hsurf_truth, hsurf_coarse):
    """Behaviour of the shipped model (figures live in benchmarks/): trained, not random."""
    import torch

    from climgen.models.generator import bicubic_upsample

    truth = hsurf_truth["HSURF"].values[0]
    bicubic = bicubic_upsample(torch.tensor(hsurf_coarse["HSURF"].values)[None], 4)[0, 0].numpy()

    def rmse(field):
        return float(np.sqrt(np.mean((field - truth) ** 2)))

    assert rmse(refined_hsurf["HSURF"].values[0]) < rmse(bicubic)


def test_uniform_refines_everything_to_full_depth(hsurf_coarse):
    uniform = pipeline.synthesize(hsurf_coarse, factor=4, adaptive=False)
    assert (uniform["refinement_depth"].values == 2).all()
    assert_coarse_consistent(uniform["HSURF"], hsurf_coarse["HSURF"], 4)


def test_budget_lowers_the_depth(hsurf_coarse):
    cheap = pipeline.synthesize(hsurf_coarse, factor=4, budget=0.2)
    assert cheap["refinement_depth"].mean() < 2
    with pytest.raises(ConfigError, match="budget"):
        pipeline.synthesize(hsurf_coarse, factor=4, budget=0.5, adaptive=False)


def test_default_depth_follows_the_predicted_gain(hsurf_truth):
    """The default map is the tolerance rule on the plan's gain prediction (then deepened
    inside shared windows at no cost), recorded in the provenance with the self-test's figures."""
    coarse = coarsen_dataset(hsurf_truth, 4)
    job = pipeline.plan(coarse, pipeline.make_config(factor=4, tile_size=8))
    layout = job.prepared.layout
    rule = gain.depth_by_tolerance(job.gain, gain.DEFAULT_TOLERANCE)
    np.testing.assert_array_equal(job.depth, layout.deepen_within_windows(rule, job.scores.constant))
    assert window_cells(layout, job.depth) == window_cells(layout, rule)
    assert len(np.unique(rule)) > 1, "real terrain gets a varied map"
    policy = job.provenance(1, 0.0)["depth_policy"]
    assert policy["policy"] == "predicted gain" and policy["tolerance"] == gain.DEFAULT_TOLERANCE
    assert 0 < policy["octave_ratio"] <= 1 and policy["fields_tested"] == 1
    looser = pipeline.plan(coarse, pipeline.make_config(factor=4, tile_size=8, tolerance=0.2))
    assert looser.depth.sum() < job.depth.sum()
    # quality folds into the tolerance: RMSE within 1 / quality of full depth's
    same = pipeline.plan(coarse, pipeline.make_config(factor=4, tile_size=8, quality=1 / np.sqrt(1 + gain.DEFAULT_TOLERANCE)))
    np.testing.assert_array_equal(same.depth, job.depth)


def test_the_gain_map_is_in_the_output(refined_hsurf, hsurf_coarse):
    values = refined_hsurf["predicted_gain"]
    assert values.attrs["units"] == "1" and np.isfinite(values).all() and float(values.max()) > 0
    assert "predicted_gain" in refined_hsurf["HSURF"].attrs["ancillary_variables"].split()
    uniform = pipeline.synthesize(hsurf_coarse, factor=4, adaptive=False)
    assert np.isnan(uniform["predicted_gain"]).all()  # no prediction made


@pytest.mark.parametrize(
    "options",
    [{"tolerance": 0}, {"tolerance": 1.5}, {"tolerance": 0.01, "budget": 0.5}, {"tolerance": 0.01, "adaptive": False}],
)
def test_bad_tolerance_is_a_config_error(options):
    with pytest.raises(ConfigError, match="tolerance"):
        pipeline.make_config(**options)


def test_models_that_sample_detail_keep_the_score_thresholds(hsurf_coarse):
    job = pipeline.plan(hsurf_coarse, pipeline.make_config(factor=4, model="amsgm-stage2"))
    assert job.gain is None and job.depth_policy["policy"] == "thresholds"
    with pytest.raises(ConfigError, match="samples detail"):
        pipeline.plan(hsurf_coarse, pipeline.make_config(factor=4, model="amsgm-stage2", tolerance=0.01))


@pytest.mark.parametrize(
    ("policy", "text"),
    [
        ({"policy": "thresholds", "thresholds": [0.25, 0.5, 0.85]}, "score thresholds 0.25, 0.50, 0.85"),
        ({"policy": "thresholds", "thresholds": [0.1, float("inf")]}, "score thresholds 0.10, never"),
        (
            {"policy": "predicted gain", "tolerance": 0.01, "skill": 0.2, "octave_ratio": 0.5},
            "predicted gain, tolerance 0.01 of full depth's squared error; skill 0.20, octave ratio 0.50",
        ),
        (
            {"policy": "predicted gain", "tolerance": 0.015, "skill": 0.2, "octave_ratio": 0.5, "edge_share": 0.25},
            "predicted gain, tolerance 0.015 of full depth's squared error; skill 0.20, octave ratio 0.50, "
            "25% of cells on edges (coasts, bounds, covariate detail)",
        ),
        ({"policy": "budget", "by": "predicted gain", "budget": 0.3}, "budget 0.3 by predicted gain"),
        ({"policy": "uniform"}, "uniform full depth"),
        ({}, ""),
    ],
)
def test_depth_policy_in_words(policy, text):
    assert pipeline.depth_policy_text(policy) == text


@pytest.mark.parametrize("kind", ["latlon", "rotated", "projected"])
@pytest.mark.parametrize("factor", [2, 8])
def test_each_grid_kind_and_factor(kind, factor):
    ds = make_dataset(kind, shape=(12, 16), times=2)
    out = ds.climgen.synthesize(factor=factor)
    axes = {"latlon": ("lat", "lon"), "rotated": ("rlat", "rlon"), "projected": ("y", "x")}[kind]
    assert out["tas"].dims == ("time", *axes)
    assert out["tas"].shape == (2, 12 * factor, 16 * factor)
    assert_coarse_consistent(out["tas"], ds["tas"], factor)
    if kind != "latlon":
        assert out["lat"].dims == axes and np.isfinite(out["lat"]).all()


def test_descending_latitude_and_0_360_longitude_are_kept():
    ds = make_dataset("latlon", shape=(12, 16), descending_y=True, lon_0_360=True)
    out = ds.climgen.synthesize(factor=2)
    assert (np.diff(out["lat"].values) < 0).all()
    assert out["lon"].min() > 180
    assert_coarse_consistent(out["tas"], ds["tas"], 2)


def test_missing_cells_stay_missing_and_do_not_leak():
    ds = make_dataset("latlon", shape=(16, 16))
    ds["tas"][3:6, 4:9] = np.nan
    ds["tas"][0, 0] = np.nan
    out = ds.climgen.synthesize(factor=4)
    assert_coarse_consistent(out["tas"], ds["tas"], 4)


def test_all_missing_and_constant_fields_are_handled():
    ds = make_dataset("latlon", shape=(8, 8), times=2)
    ds["tas"][0] = np.nan
    ds["tas"][1] = 250.0
    out = ds.climgen.synthesize(factor=2)
    assert np.isnan(out["tas"][0]).all()
    np.testing.assert_allclose(out["tas"][1], 250.0, rtol=1e-6)
    assert (out["refinement_depth"] == 0).all()


def test_domain_smaller_than_a_tile():
    ds = make_dataset("latlon", shape=(3, 2))
    out = ds.climgen.synthesize(factor=4)
    assert out["tas"].shape == (12, 8)
    assert_coarse_consistent(out["tas"], ds["tas"], 4)


def test_extra_dimensions_are_kept_in_order():
    base = make_dataset("latlon", shape=(8, 8), times=2)
    ds = xr.concat([base, base + 1], dim="height").assign_coords(height=[2.0, 10.0])
    ds["tas"] = ds["tas"].transpose("time", "height", "lat", "lon")
    out = ds.climgen.synthesize(factor=2)
    assert out["tas"].dims == ("time", "height", "lat", "lon")
    np.testing.assert_array_equal(out["height"].values, [2.0, 10.0])
    assert_coarse_consistent(out["tas"], ds["tas"], 2)


def test_members_form_a_realization_dimension():
    ds = make_dataset("latlon", shape=(8, 8))
    out = ds.climgen.synthesize(factor=2, members=3, seed=5)
    assert out["tas"].dims == ("realization", "lat", "lon")
    assert out["realization"].attrs["standard_name"] == "realization"
    for member in range(3):
        assert_coarse_consistent(out["tas"].isel(realization=member), ds["tas"], 2)


def test_a_field_draws_the_same_members_refined_alone_or_in_its_series():
    """Members' noise is named by the field's time, not its position in the input: a month
    refined alone, or a decade of a series, draws what the whole series draws for it."""
    ds = make_dataset("latlon", shape=(16, 16), times=6)
    ds = ds.assign_coords(time=pd.date_range("2000-01-16", periods=6, freq="MS"))
    whole = ds.climgen.synthesize(factor=2, members=2, seed=4)["tas"]
    later = ds.isel(time=slice(3, 6)).climgen.synthesize(factor=2, members=2, seed=4)["tas"]
    np.testing.assert_array_equal(later.values, whole.isel(time=slice(3, 6)).values)
    picked = ds.isel(time=4).climgen.synthesize(factor=2, members=2, seed=4)["tas"]  # its time a scalar coordinate
    np.testing.assert_array_equal(picked.values, whole.isel(time=4).values)
    # the same months a year on are other fields: their members draw other noise
    shifted = ds.assign_coords(time=ds["time"] + pd.Timedelta(days=365)).climgen.synthesize(factor=2, members=2, seed=4)
    assert not np.array_equal(shifted["tas"].values, whole.values)


def test_covariate_on_another_lat_lon_grid_and_longitude_convention():
    ds = make_dataset("latlon", shape=(12, 16), lon_0_360=True)
    fine = make_dataset("latlon", shape=(48, 64), name="orog")["orog"]
    fine = fine.assign_coords(lon=np.linspace(-161, -129, 64), lat=np.linspace(-11, 11, 48))
    out = ds.climgen.synthesize(factor=4, covariates={"elevation": fine})
    assert_coarse_consistent(out["tas"], ds["tas"], 4)
    provenance = out.attrs["climgen_provenance"]
    assert "elevation" in provenance


def test_a_global_covariate_is_read_only_around_the_domain(monkeypatch):
    """A fine global covariate (1 km elevation is gigabytes) is cut to the domain before it is
    read, and gives the same refined field as the same covariate cut by hand."""
    ds = make_dataset("latlon", shape=(12, 16))
    lat, lon = np.linspace(-89.75, 89.75, 360), np.linspace(-179.75, 179.75, 720)
    field = np.random.default_rng(3).standard_normal((360, 720))
    globe = xr.DataArray(field, dims=("lat", "lon"), coords={"lat": lat, "lon": lon}, name="orog", attrs={"units": "m"})
    box = globe.sel(lat=slice(-20, 20), lon=slice(0, 50))
    from climgen import covariates as alignment

    read = []
    original = alignment._around
    monkeypatch.setattr(alignment, "_around", lambda *args: read.append(original(*args)) or read[-1])
    whole = ds.climgen.synthesize(factor=4, covariates={"elevation": globe})
    assert read[-1].sizes["lat"] * read[-1].sizes["lon"] < 0.02 * globe.size  # what interpolation reads
    np.testing.assert_array_equal(
        whole["tas"].values, ds.climgen.synthesize(factor=4, covariates={"elevation": box})["tas"].values
    )


@pytest.mark.parametrize("kind", ["latlon", "projected"])
def test_a_finer_covariate_is_averaged_over_each_fine_cell(kind):
    """A covariate at 8x the fine resolution (nested cells) gives its cell means, weighted by
    area on lat/lon (it used to be sampled bilinearly at the fine cells' centres)."""
    ds = make_dataset(kind, shape=(6, 8))
    axes = find_spatial_axes(ds)
    fine_axes = pipeline._fine_axes(ds, axes, 2)
    edges = {}
    for axis in (axes.y, axes.x):
        bounds = fine_axes[axis][1].values
        parts = np.linspace(0, 1, 9)
        edges[axis] = (bounds[:, :1] + (bounds[:, 1:] - bounds[:, :1]) * parts[None]).reshape(-1, 9)
    centres = {axis: ((edges[axis][:, :-1] + edges[axis][:, 1:]) / 2).ravel() for axis in edges}
    rows, cols = centres[axes.y].size, centres[axes.x].size
    checker = np.where((np.arange(rows)[:, None] + np.arange(cols)[None]) % 2 == 0, 1.0, -1.0)
    noise = np.random.default_rng(2).normal(size=(rows, cols))
    values = checker * 100 + noise
    covariate = xr.DataArray(
        values, dims=(axes.y, axes.x), coords={axes.y: centres[axes.y], axes.x: centres[axes.x]}, name="orog"
    )
    aligned = pipeline.align_covariate(covariate, "orog", axes, fine_axes)
    weights = np.ones((rows, cols))
    if kind == "latlon":  # each source cell weighs its area: the sin(latitude) span of its row
        row_edges = np.stack([edges[axes.y][:, :-1].ravel(), edges[axes.y][:, 1:].ravel()], axis=1)
        weights *= np.abs(np.diff(np.sin(np.radians(row_edges)), axis=1))
    blocks = (values * weights).reshape(rows // 8, 8, cols // 8, 8).sum(axis=(1, 3))
    expected = blocks / weights.reshape(rows // 8, 8, cols // 8, 8).sum(axis=(1, 3))
    np.testing.assert_allclose(aligned, expected, rtol=1e-9, atol=1e-9)
    assert np.abs(aligned).max() < 5, "the checkerboard averages out; a point sample would keep +-100"


def test_a_covariate_finer_along_one_axis_only_is_averaged_along_it():
    """Three covariate rows to a fine row but a column to two fine columns: rows alternating
    +-100 average to +-33 over each fine row, where a point sample at its centre gives -+100."""
    ds = make_dataset("projected", shape=(6, 8))
    axes = find_spatial_axes(ds)
    fine_axes = pipeline._fine_axes(ds, axes, 2)
    row_edges = fine_axes[axes.y][1].values
    rows = (row_edges[:, :1] + (row_edges[:, 1:] - row_edges[:, :1]) * (np.arange(3) + 0.5)[None] / 3).ravel()
    columns = fine_axes[axes.x][0].values[::2] + 0.5 * np.diff(fine_axes[axes.x][0].values[:2])
    values = np.where(np.arange(rows.size) % 2 == 0, 100.0, -100.0)[:, None] + np.zeros((1, columns.size))
    covariate = xr.DataArray(values, dims=(axes.y, axes.x), coords={axes.y: rows, axes.x: columns}, name="orog")
    with pytest.warns(UserWarning, match="coarser than the output grid"):  # the columns are
        aligned = pipeline.align_covariate(covariate, "orog", axes, fine_axes)
    column = aligned[:, aligned.shape[1] // 2]
    assert np.isfinite(column).sum() >= 8
    np.testing.assert_allclose(np.abs(column[np.isfinite(column)]), 100 / 3, rtol=1e-9)


def test_terrain_covariate_puts_temperature_detail_where_the_terrain_is(hsurf_truth):
    # real terrain, a temperature that follows it below 1.5 degrees (6.5 K/km): with the terrain
    # as covariate the refined field must be far closer to the truth than without it, and the
    # covariate must count where it lies (the same terrain turned upside down must not help)
    from scipy import ndimage

    from climgen.grid import coarsen_dataset

    terrain = hsurf_truth["HSURF"].isel(time=0).fillna(0.0)
    departure = terrain.values - ndimage.gaussian_filter(terrain.values.astype(float), 1.5 / 0.44, mode="nearest")
    large_scale = 300.0 - 0.4 * (terrain["rlat"] - terrain["rlat"].mean()) + 0.1 * (terrain["rlon"] - terrain["rlon"].mean())
    truth = (large_scale - 6.5e-3 * departure).astype(np.float32).expand_dims(time=hsurf_truth["time"])
    truth.attrs = {"standard_name": "air_temperature", "units": "K"}
    truth_ds = hsurf_truth.drop_vars("HSURF").assign(tas=truth)
    coarse = coarsen_dataset(truth_ds, 4)

    def rmse(covariates) -> float:
        out = pipeline.synthesize(coarse, factor=4, seed=0, covariates=covariates)
        return float(np.sqrt(((out["tas"] - truth) ** 2).mean()))

    without = rmse(None)
    with_terrain = rmse({"elevation": terrain})
    upside_down = rmse({"elevation": terrain.copy(data=terrain.values[::-1])})
    assert with_terrain < 0.7 * without
    assert upside_down > 1.5 * with_terrain


def test_a_covariate_covering_part_of_the_domain_is_named_in_a_warning():
    ds = make_dataset("latlon", shape=(8, 8))
    fine = ds.climgen.synthesize(factor=2)["tas"].reset_coords(drop=True)  # on the output's grid
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one that covers it all: no warning
        ds.climgen.synthesize(factor=2, covariates={"elevation": fine})
    with pytest.warns(UserWarning, match="covariate 'elevation' has values on 50% of the domain"):
        ds.climgen.synthesize(factor=2, covariates={"elevation": fine.isel(lon=slice(0, 8))})
    # missing values inside its grid count alike
    with pytest.warns(UserWarning, match="covariate 'elevation' has values on 62% of the domain"):
        ds.climgen.synthesize(factor=2, covariates={"elevation": fine.where(fine["lon"] < fine["lon"][10])})
    # the coarse grid's own field passed as a fine covariate (or any coarser file) is said to be coarse
    with pytest.warns(UserWarning, match="covariate 'elevation' is coarser than the output grid .cells about 2.0 times"):
        ds.climgen.synthesize(factor=2, covariates={"elevation": ds["tas"]})


def test_covariate_errors_are_clear():
    ds = make_dataset("latlon", shape=(8, 8))
    far = make_dataset("latlon", shape=(8, 8))["tas"].assign_coords(lat=np.linspace(60, 70, 8))
    with pytest.raises(InputError, match="does not overlap"):
        ds.climgen.synthesize(factor=2, covariates={"elevation": far})
    rotated = make_dataset("rotated", shape=(8, 8))["tas"]
    with pytest.raises(InputError, match="regrid the covariate"):
        ds.climgen.synthesize(factor=2, covariates={"elevation": rotated})
    many = {f"c{i}": make_dataset("latlon", shape=(8, 8))["tas"] for i in range(3)}
    with pytest.raises(ConfigError, match="at most 2 covariates"):
        ds.climgen.synthesize(factor=2, covariates=many)


def test_bad_requests_raise_typed_errors():
    ds = make_dataset("latlon", shape=(8, 8))
    with pytest.raises(ConfigError, match="factor"):
        ds.climgen.synthesize(factor=3)
    with pytest.raises(InputError, match="variables not found"):
        ds.climgen.synthesize(variables=["pr"])
    with pytest.raises(ConfigError, match="seed"):
        ds.climgen.synthesize(seed=-1)
    with pytest.raises(ConfigError, match="members"):
        ds.climgen.synthesize(members=0)
    with pytest.raises(ConfigError, match="merge_tiles"):
        ds.climgen.synthesize(merge_tiles=0)
    pieces = ds.assign_coords(lon=np.concatenate([np.linspace(0, 9, 4), np.linspace(200, 209, 4)]))
    with pytest.raises(GridError, match="separate pieces"):
        pieces.climgen.synthesize(factor=2)


def test_accessor_forwards_to_the_pipeline(hsurf_coarse, refined_hsurf):
    via_accessor = hsurf_coarse.climgen.synthesize(factor=4, seed=3)
    np.testing.assert_array_equal(via_accessor["HSURF"].values, refined_hsurf["HSURF"].values)
    scores = hsurf_coarse.climgen.complexity(factor=4)
    assert scores.dims == ("rlat", "rlon") and scores.shape == hsurf_coarse["HSURF"].shape[1:]
    assert float(scores.max()) > float(scores.min())


def test_a_climgen_output_refined_again_gets_new_maps_and_refines_only_its_fields():
    """The score, depth and compute maps of a first refinement are not fields: refined as
    fields they cost a run each and their scores were mixed into the new depth decisions."""
    from climgen.io.cf import refined_variables

    once = pipeline.synthesize(make_dataset("latlon", shape=(16, 16), times=2), factor=2)
    twice = pipeline.synthesize(once, factor=2)
    assert refined_variables(twice) == ["tas"]
    only_tas = pipeline.synthesize(once, factor=2, variables=["tas"])
    macs = [json.loads(result.attrs["climgen_provenance"])["compute"]["macs"] for result in (twice, only_tas)]
    assert macs[0] == macs[1]  # no model runs for the maps
    assert np.array_equal(twice["complexity_score"][::2, ::2], pipeline.complexity(once, factor=2))


def test_categorical_variables_are_not_refined():
    ds = make_dataset("latlon", shape=(8, 8))
    cover = (np.arange(64).reshape(8, 8) % 3).astype("int8")
    ds["landcover"] = (("lat", "lon"), cover, {"flag_values": np.array([0, 1, 2], "int8"), "flag_meanings": "water forest crop"})
    with pytest.warns(InputWarning, match=r"variables \['landcover'\] hold categories .* left out of the output"):
        assert "landcover" not in pipeline.synthesize(ds, factor=2)  # averaged categories mean nothing
    with pytest.raises(InputError, match="holds categories"):
        pipeline.synthesize(ds, factor=2, variables=["landcover"])
    with pytest.raises(InputError, match=r"no variable on the \(lat, lon\) grid to refine: \['landcover'\] hold categories"):
        pipeline.synthesize(ds[["landcover"]], factor=2)


def test_dataarray_accessor():
    da = make_dataset("latlon", shape=(8, 8))["tas"]
    out = da.climgen.synthesize(factor=2)
    assert "tas" in out and out["tas"].shape == (16, 16)


def test_provenance_and_history(refined_hsurf, hsurf_coarse):
    import json

    provenance = json.loads(refined_hsurf.attrs["climgen_provenance"])
    assert provenance["factor"] == 4 and provenance["seed"] == 3
    assert len(provenance["model_sha256"]) == 64
    # the layout that shaped the numbers: tiles, halo and how many share a window
    assert provenance["merge_tiles"] == 4 and provenance["halo"] == 4 and provenance["tile_size"] == 8
    assert refined_hsurf.attrs["Conventions"] == "CF-1.8, ACDD-1.3"
    assert (
        refined_hsurf.attrs["history"]
        .splitlines()[0]
        .endswith("ds.climgen.synthesize(factor=4, seed=3, members=1, adaptive=True, model='default')")
    )
    # what the bits depend on besides the options: torch and the CPU kernels it used
    assert provenance["software"]["torch"] and provenance["software"]["cpu_capability"]
    assert provenance["inputs"] == []  # made in memory: no file to name


def test_provenance_names_the_files_the_input_came_from(hsurf_coarse_file, tmp_path, climgen_cli):
    """An output said which covariate files it used but not which input: the history's command
    held a relative path at most, and a recipe run only the recipe's name."""
    import json

    assert climgen_cli("synthesize", hsurf_coarse_file, tmp_path / "fine.nc", "--factor", 2).returncode == 0
    with xr.open_dataset(tmp_path / "fine.nc") as fine:
        (source,) = json.loads(fine.attrs["climgen_provenance"])["inputs"]
    assert source["path"] == str(hsurf_coarse_file.resolve()) and source["bytes"] == hsurf_coarse_file.stat().st_size
    assert source["modified"].endswith("Z")


def test_unknown_grid_mapping_interpolates_the_input_latlon():
    from climgen.grid import find_spatial_axes
    from climgen.io.cf import auxiliary_latlon

    ds = make_dataset("rotated", shape=(12, 16))
    exact = ds.climgen.synthesize(factor=2)
    lat, lon = auxiliary_latlon(ds, find_spatial_axes(ds), "rotated_pole", ds["rlat"].values, ds["rlon"].values)
    ds = ds.assign_coords(
        lat=(("rlat", "rlon"), lat, {"standard_name": "latitude", "units": "degrees_north"}),
        lon=(("rlat", "rlon"), lon, {"standard_name": "longitude", "units": "degrees_east"}),
    )
    ds["rotated_pole"].attrs = {"grid_mapping_name": "not_a_known_mapping"}
    out = ds.climgen.synthesize(factor=2)
    np.testing.assert_allclose(out["lat"], exact["lat"], atol=0.05)
    np.testing.assert_allclose(out["lon"], exact["lon"], atol=0.1)


def test_ensemble_spread_is_larger_where_the_field_is_complex():
    ds = make_dataset("latlon", shape=(32, 32), seed=6)  # smooth west half, rough east half
    out = ds.climgen.synthesize(factor=4, members=4, seed=1)
    spread = out["tas"].std("realization").values
    west, east = spread[:, :64].mean(), spread[:, 64:].mean()
    assert east > 3 * west > 0
    for member in range(4):  # every member keeps the coarse values
        block_means = out["tas"].isel(realization=member).coarsen(lat=4, lon=4).mean().values
        np.testing.assert_allclose(block_means, ds["tas"].values, atol=2e-3)


def test_default_members_spread_like_the_error_and_keep_the_coarse_values(hsurf_coarse, hsurf_truth):
    # one model, two outputs: members=1 is the best estimate; members > 1 are samples that
    # differ by about the error of their mean, more where the terrain is rough, each keeping
    # the coarse values, and as an ensemble they score a better CRPS than the best estimate's MAE
    from climgen import metrics

    truth = hsurf_truth["HSURF"].values.squeeze()
    best = pipeline.synthesize(hsurf_coarse, factor=4, seed=2)["HSURF"].values.squeeze()
    out = pipeline.synthesize(hsurf_coarse, factor=4, members=6, seed=2)["HSURF"]
    members = out.squeeze().transpose("realization", ...).values
    assert 0.5 < metrics.spread_skill(members, truth)["ratio"] < 1.5
    assert metrics.crps(members, truth) < metrics.mae(best, truth)
    coarse = hsurf_coarse["HSURF"].values.squeeze()
    spread = members.std(axis=0).reshape(coarse.shape[0], 4, coarse.shape[1], 4).mean(axis=(1, 3))
    roughness = np.hypot(*np.gradient(coarse))
    rough = roughness > np.nanpercentile(roughness, 75)
    smooth = roughness < np.nanpercentile(roughness, 25)
    assert np.nanmean(spread[rough]) > 2 * np.nanmean(spread[smooth])
    for member in range(6):
        assert_coarse_consistent(out.isel(realization=member), hsurf_coarse["HSURF"], 4)


def test_a_model_that_samples_detail_keeps_its_second_stage_where_the_score_asks(hsurf_coarse):
    """The ensemble model's second stage adds the members' spread: its depth map keeps the
    evenly spaced thresholds (2/3 at x4) on the complexity score."""
    sampled = pipeline.plan(hsurf_coarse, pipeline.make_config(factor=4, model="amsgm-stage2"))
    assert sampled.depth_policy["thresholds"] == [1 / 3, 2 / 3]
    deep = (sampled.scores.score >= 2 / 3) & ~sampled.scores.constant
    assert deep.any() and (sampled.depth[deep] == 2).all()


@pytest.mark.parametrize("dim", ["lat", "lon"])
def test_a_field_stored_north_to_south_or_east_to_west_is_refined_as_the_same_field(dim):
    # the model is not exactly mirror-symmetric: descending axes are turned round for it
    ds = make_dataset("latlon", shape=(32, 32), seed=4)
    ascending = ds.climgen.synthesize(factor=4, seed=0)["tas"]
    stored = ds.isel({dim: slice(None, None, -1)})
    refined = stored.climgen.synthesize(factor=4, seed=0)["tas"]
    assert refined[dim].values[0] > refined[dim].values[-1]  # the output keeps the input's order
    detail = float((ascending - ascending.coarsen(lat=4, lon=4).mean().interp_like(ascending)).std())
    np.testing.assert_allclose(refined.sortby(dim).values, ascending.values, atol=1e-3 * detail)


def test_a_covariate_with_a_gap_is_missing_there_and_projected_units_are_converted():
    """A covariate with columns left out (one tile of a mosaic missing) is not filled across
    the gap: missing there, with the partial-cover warning. A projected covariate in m on an
    input in km is the same covariate."""
    from climgen import pipeline

    ds = make_dataset("latlon", shape=(8, 16))
    fine = ds.climgen.synthesize(factor=2)["tas"].reset_coords(drop=True)
    with pytest.warns(UserWarning, match="has values on 62% of the domain"):
        plan = pipeline.plan(ds, pipeline.make_config(factor=2), {"elevation": fine.isel(lon=np.r_[0:10, 22:32])})
    missing = np.isnan(plan.prepared.covariates[0]).all(axis=0)
    assert missing[11:21].all() and not missing[:10].any() and not missing[22:].any()
    metres = make_dataset("projected", shape=(16, 16))
    kilometres = metres.assign_coords(x=metres["x"] / 1000, y=metres["y"] / 1000)
    for axis in ("x", "y"):
        kilometres[axis].attrs = metres[axis].attrs | {"units": "km"}
    covariate = metres.climgen.synthesize(factor=2)["tas"].reset_coords(drop=True)  # on the fine grid, in m
    in_m, in_km = (
        pipeline.plan(source, pipeline.make_config(factor=2), {"elevation": covariate}).prepared.covariates
        for source in (metres, kilometres)
    )
    np.testing.assert_array_equal(in_m, in_km)


def test_a_covariate_file_on_another_rotated_pole_is_refused(tmp_path):
    """The same rlat/rlon numbers about another pole are other places: a covariate file whose
    grid mapping differs from the input's is an error, not a silently misplaced covariate."""
    from climgen.errors import InputError
    from climgen.io.open import open_covariate

    ds = make_dataset("rotated", shape=(8, 8))
    fine = ds.climgen.synthesize(factor=2)[["tas", "rotated_pole"]].reset_coords(drop=True)
    fine.rename(tas="orog").to_netcdf(tmp_path / "same.nc")
    other = fine.rename(tas="orog")
    other["rotated_pole"].attrs["grid_north_pole_latitude"] = 50.0
    other.to_netcdf(tmp_path / "other.nc")
    ds.climgen.synthesize(factor=2, covariates={"elevation": open_covariate(tmp_path / "same.nc")})
    with pytest.raises(
        InputError, match="another projection than the input: its grid mapping's grid_north_pole_latitude is 50.0"
    ):
        ds.climgen.synthesize(factor=2, covariates={"elevation": open_covariate(tmp_path / "other.nc", "orog")})
    # the user guide's way, ds["orog"] of an opened file, leaves the mapping behind: read from its file
    with xr.open_dataset(tmp_path / "other.nc") as opened, pytest.raises(InputError, match="another projection"):
        ds.climgen.synthesize(factor=2, covariates={"elevation": opened["orog"]})


def test_covariates_are_named_in_the_provenance_and_two_related_ones_are_warned_of(tmp_path):
    """Which file, variable and values each covariate gave; and the default model, which learned
    from one related covariate at a time, warns when given two."""
    import json

    from climgen.errors import ClimgenWarning

    ds = make_dataset("latlon", shape=(16, 16))
    terrain = ds.climgen.synthesize(factor=2)["tas"].rename("orog").reset_coords(drop=True)
    terrain.to_netcdf(tmp_path / "orog.nc")
    with xr.open_dataset(tmp_path / "orog.nc") as opened:
        result = ds.climgen.synthesize(factor=2, covariates={"elevation": opened["orog"]})
    (source,) = json.loads(result.attrs["climgen_provenance"])["covariate_sources"]
    assert source["name"] == "elevation" and source["variable"] == "orog" and source["file"].endswith("orog.nc")
    assert len(source["sha256"]) == 64
    with pytest.warns(ClimgenWarning, match="learned from one covariate related to the field at a time"):
        ds.climgen.synthesize(factor=2, covariates={"elevation": terrain, "land": terrain > 280})


def test_covariates_in_any_order_with_unstated_units_and_changing_spacing_are_aligned_whole():
    """A projected covariate stored east to west, one whose axes state no units (the input's
    are taken), and one whose spacing widens from 0.25 to 1 degree (no gap) lose no cell."""
    from climgen import pipeline

    projected = make_dataset("projected", shape=(16, 16))
    fine = projected.climgen.synthesize(factor=2)["tas"].reset_coords(drop=True)
    for covariate in (fine.isel(x=slice(None, None, -1)), fine.assign_coords(x=fine["x"].values, y=fine["y"].values)):
        aligned = pipeline.plan(projected, pipeline.make_config(factor=2), {"elevation": covariate}).prepared.covariates
        assert np.isfinite(aligned).all()
    ds = make_dataset("latlon", shape=(8, 16))  # longitudes 10 to 40
    lon = np.concatenate([np.arange(8.0, 20.0, 0.25), np.arange(20.0, 43.0, 1.0)])
    lat = np.linspace(-12, 12, 49)
    varying = xr.DataArray(
        np.random.default_rng(0).normal(size=(lat.size, lon.size)), dims=("lat", "lon"), coords={"lat": lat, "lon": lon}
    )
    aligned = pipeline.plan(ds, pipeline.make_config(factor=2), {"elevation": varying}).prepared.covariates
    assert np.isfinite(aligned).all()


def test_tiles_inside_a_window_the_run_refines_deeper_take_that_depth_at_no_cost(hsurf_truth):
    """The run shares one window among a group's tiles where the network's margin makes that
    cheaper: a tile the window spans gets the deeper stage computed over it, and the map says so."""
    coarse = coarsen_dataset(hsurf_truth, 4)
    job = pipeline.plan(coarse, pipeline.make_config(factor=4, tile_size=8))
    cols = min(job.prepared.layout.merge, job.depth.shape[1])  # the first group's
    corners = np.ones_like(job.depth)
    corners[0, 0] = corners[0, cols - 1] = 2  # the ends of its first row
    deepened = job.deepened(corners)
    assert (deepened[0, :cols] == 2).all() and (deepened[1:] == 1).all() and (deepened[:, cols:] == 1).all()
    assert job.work(deepened, deepen=False) == job.work(corners, deepen=False)


def test_a_variable_without_data_leaves_the_others_depth_alone(recwarn):
    """An all-missing variable beside another (a masked product's empty field) is no reason to
    refine the other deeper: the same depth, the same values, no warning; it stays missing."""
    ds = make_dataset("latlon", shape=(24, 32), seed=4)
    alone = pipeline.synthesize(ds, factor=4, seed=1)
    both = pipeline.synthesize(ds.assign(empty=ds["tas"].where(False)), factor=4, seed=1)
    np.testing.assert_array_equal(both["refinement_depth"].values, alone["refinement_depth"].values)
    np.testing.assert_array_equal(both["tas"].values, alone["tas"].values)
    assert bool(np.isnan(both["empty"]).all()) and not [w for w in recwarn if "too small" in str(w.message)]
    # a tile with data only in the time steps the self-test does not read (it reads 4 of 6) is
    # not taken for empty: it keeps full depth
    series = make_dataset("latlon", shape=(24, 32), times=6, seed=4)
    values = series["tas"].values.copy()
    values[[0, 2, 3, 5], :8, :8] = np.nan
    gappy = pipeline.synthesize(series.assign(tas=(series["tas"].dims, values, series["tas"].attrs)), factor=4)
    assert int(gappy["refinement_depth"].values[:16, :16].min()) == 2


def test_a_lat_lon_covariate_serves_a_rotated_input():
    """A global elevation on lat/lon for a rotated-pole model: read at the fine cells' latitudes
    and longitudes (averaged over about a fine cell first), and it changes the refinement."""
    ds = make_dataset("rotated", shape=(8, 8))
    lat, lon = np.arange(-40.0, 80.0, 0.25), np.arange(-60.0, 120.0, 0.25)
    plane = xr.DataArray(
        10 * lat[:, None] + lon[None, :],
        dims=("lat", "lon"),
        coords={"lat": ("lat", lat, {"units": "degrees_north"}), "lon": ("lon", lon, {"units": "degrees_east"})},
    )
    refined = pipeline.synthesize(ds, factor=2, covariates={"elevation": plane})
    job = pipeline.plan(ds, pipeline.make_config(factor=2), covariates={"elevation": plane})
    expected = 10 * refined["lat"].values.astype(np.float64) + refined["lon"].values
    np.testing.assert_allclose(job.prepared.covariates[0], expected, atol=0.05)  # a plane is exact under both steps
    assert not np.array_equal(refined["tas"].values, pipeline.synthesize(ds, factor=2)["tas"].values)
    # -180..180 or 0..360 alike
    east = plane.assign_coords(lon=plane["lon"] % 360).sortby("lon")
    np.testing.assert_array_equal(pipeline.synthesize(ds, factor=2, covariates={"elevation": east})["tas"], refined["tas"])


def test_a_fine_global_lat_lon_covariate_is_averaged_over_each_fine_cell_of_a_rotated_grid(tmp_path):
    """A global 0.25-degree field, read from a file whose grid mapping says latitude_longitude:
    a smooth part plus a checkerboard of single cells, which averaging over about a fine cell
    (1.4 degrees here) removes and sampling would keep; no cell of the domain is missed."""
    from climgen.io.open import open_covariate

    ds = make_dataset("rotated", shape=(8, 8))
    lat, lon = np.arange(-89.875, 90, 0.25), np.arange(-179.875, 180, 0.25)
    smooth = 100 * np.sin(np.radians(lat))[:, None] * np.cos(np.radians(lon))[None, :]
    checkerboard = 50.0 * (-1) ** (np.arange(lat.size)[:, None] + np.arange(lon.size)[None, :])
    coords = {"lat": ("lat", lat, {"units": "degrees_north"}), "lon": ("lon", lon, {"units": "degrees_east"})}
    field = xr.DataArray(smooth + checkerboard, dims=("lat", "lon"), coords=coords, attrs={"grid_mapping": "crs"})
    xr.Dataset({"elevation": field, "crs": ((), 0, {"grid_mapping_name": "latitude_longitude"})}).to_netcdf(tmp_path / "dem.nc")
    covariate = open_covariate(tmp_path / "dem.nc", "elevation")
    job = pipeline.plan(ds, pipeline.make_config(factor=2), covariates={"elevation": covariate})
    refined = pipeline.synthesize(ds, factor=2)
    fine_lat, fine_lon = (refined[name].values.astype(np.float64) for name in ("lat", "lon"))
    expected = 100 * np.sin(np.radians(fine_lat)) * np.cos(np.radians(fine_lon))
    values = job.prepared.covariates[0]
    assert np.isfinite(values).all()
    np.testing.assert_allclose(values, expected, atol=5)  # sampled, the checkerboard would be up to 50 off

"""Area-weighted coarse consistency (``conservation="area"``): on lat/lon grids cells shrink
towards the poles, and coarse values from conservative regridding are area-weighted means."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr
import yaml

from climgen import pipeline, streaming
from climgen.conservation import order_fields, project_blocks
from climgen.errors import ConfigError
from climgen.grid import area_weights, cell_weights, coarsen_dataset
from climgen.testing import assert_coarse_consistent, make_dataset

FACTOR = 4


def test_cell_weights_follow_the_sphere_on_lat_lon_grids_and_the_plane_elsewhere():
    edges = np.array([[0.0, 1.0], [60.0, 61.0], [89.0, 90.0]])
    widths = np.array([[0.0, 2.0], [2.0, 3.0]])
    rows, cols = cell_weights(edges, widths, "latlon")
    np.testing.assert_allclose(rows / rows[0], [1.0, np.cos(np.radians(60.5)) / np.cos(np.radians(0.5)), 0.00873], rtol=2e-3)
    np.testing.assert_array_equal(cols, [2.0, 1.0])
    np.testing.assert_array_equal(cell_weights(edges, widths, "projected")[0], [1.0, 1.0, 1.0])


def _weighted_means(values: np.ndarray, weights) -> np.ndarray:
    """Area-weighted block means, written out independently of climgen's."""
    area = weights[0][:, None] * weights[1][None, :]
    ny, nx = values.shape[0] // FACTOR, values.shape[1] // FACTOR
    total = (values * area).reshape(ny, FACTOR, nx, FACTOR).sum(axis=(1, 3))
    return total / area.reshape(ny, FACTOR, nx, FACTOR).sum(axis=(1, 3))


@pytest.mark.parametrize("seed", range(3))
def test_weighted_projection_keeps_area_means_and_bounds_and_moves_towards_the_truth(seed):
    rng = np.random.default_rng(seed)
    lat_edges = np.linspace(40.0, 88.0, 6 * FACTOR + 1)
    weights = cell_weights(np.stack([lat_edges[:-1], lat_edges[1:]], 1), np.ones((5 * FACTOR, 2)) * [0.0, 1.0], "latlon")
    truth = rng.uniform(0.0, 1.0, (6 * FACTOR, 5 * FACTOR))
    coarse = _weighted_means(truth, weights)
    guess = truth + rng.normal(size=truth.shape) * 0.4
    area = weights[0][:, None] * weights[1][None, :]
    for bounds in (None, (0.0, 1.0)):
        projected = project_blocks(guess, coarse, FACTOR, bounds=bounds, weights=weights)
        np.testing.assert_allclose(_weighted_means(projected, weights), coarse, rtol=0, atol=1e-12)
        assert np.sum(area * (projected - truth) ** 2) <= np.sum(area * (guess - truth) ** 2)
        if bounds:
            assert projected.min() >= 0.0 and projected.max() <= 1.0
    assert np.abs(project_blocks(guess, coarse, FACTOR).reshape(6, FACTOR, 5, FACTOR).mean(axis=(1, 3)) - coarse).max() < 1e-12
    # a dry block (its mean at the lower bound) is exactly dry, not dry to rounding, with weights too
    dry = coarse.copy()
    dry[::2, ::2] = 0.0
    projected = project_blocks(guess, dry, FACTOR, bounds=(0.0, None), weights=weights).reshape(6, FACTOR, 5, FACTOR)
    assert (projected[::2, :, ::2, :] == 0.0).all()
    # ordering with area weights keeps the area means too
    low = project_blocks(truth - 0.1 + rng.normal(size=truth.shape) * 0.2, coarse - 0.1, FACTOR, weights=weights)
    high = project_blocks(guess, coarse, FACTOR, weights=weights)
    assert (low > high).any()
    order_fields([low, high], [coarse - 0.1, coarse], FACTOR, weights=weights)
    assert (low <= high).all()
    np.testing.assert_allclose(_weighted_means(low, weights), coarse - 0.1, rtol=0, atol=1e-12)


@pytest.fixture(scope="module")
def polar_truth() -> xr.Dataset:
    """A temperature field from 50 to 86 N, where a block's rows differ in area by up to 20%."""
    ds = make_dataset("latlon", shape=(48, 32), times=2, seed=3)
    return ds.assign_coords(lat=("lat", np.linspace(50.375, 85.625, 48), ds["lat"].attrs))


def test_area_conservation_end_to_end_memory_streaming_and_cli(polar_truth, tmp_path, climgen_cli):
    coarse = coarsen_dataset(polar_truth, FACTOR, conservation="area")
    np.testing.assert_allclose(
        coarse["tas"].values[0],
        _weighted_means(polar_truth["tas"].values[0].astype(np.float64), area_weights(polar_truth)),
        rtol=1e-6,
    )
    refined = pipeline.synthesize(coarse, factor=FACTOR, seed=1, conservation="area", tile_size=4)
    assert_coarse_consistent(refined["tas"], coarse["tas"], FACTOR, weights=area_weights(refined))
    with pytest.raises(AssertionError):  # the cell means differ from the area means
        assert_coarse_consistent(refined["tas"], coarse["tas"], FACTOR)
    assert json.loads(refined.attrs["climgen_provenance"])["conservation"] == "area"
    assert "conservation='area'" in refined.attrs["history"]
    source = tmp_path / "coarse.nc"
    coarse.to_netcdf(source)
    config = pipeline.make_config(factor=FACTOR, seed=1, conservation="area", tile_size=4)
    with xr.open_dataset(source) as ds:
        job = streaming.run(ds, tmp_path / "out.zarr", config, options=streaming.StreamOptions(region_tiles=1, progress=False))
    assert "blocks      area-weighted means equal the coarse values" in job.describe()
    with xr.open_zarr(tmp_path / "out.zarr") as got:
        np.testing.assert_array_equal(got["tas"].values, refined["tas"].values)
    recipe = tmp_path / "job.yaml"
    recipe.write_text(
        yaml.safe_dump({"input": "coarse.nc", "output": "cli.nc", "tile_size": 4, "seed": 1, "conservation": "area"})
    )
    result = climgen_cli("run", recipe, "--quiet")
    assert result.returncode == 0, result.stderr
    assert "blocks match by area-weighted means;" in result.stdout
    with xr.open_dataset(tmp_path / "cli.nc") as from_cli:
        np.testing.assert_array_equal(from_cli["tas"].values, refined["tas"].values)
    with pytest.raises(ConfigError, match="conservation must be one of"):
        pipeline.synthesize(coarse, conservation="volume")
    with pytest.raises(ConfigError, match="conservation must be one of"):
        coarsen_dataset(polar_truth, FACTOR, conservation="areas")


def test_coarsen_command_writes_area_weighted_means(polar_truth, tmp_path, climgen_cli):
    truth = tmp_path / "truth.nc"
    polar_truth.to_netcdf(truth)
    output = tmp_path / "coarse.nc"
    result = climgen_cli("coarsen", truth, output, "--factor", "4", "--conservation", "area")
    assert result.returncode == 0, result.stderr
    with xr.open_dataset(output) as coarse:
        assert "area-weighted mean of 4x4 cells" in coarse["tas"].attrs["cell_methods"]
        expected = _weighted_means(polar_truth["tas"].values[1].astype(np.float64), area_weights(polar_truth))
        np.testing.assert_allclose(coarse["tas"].values[1], expected, rtol=1e-6)


def test_evaluate_compares_with_bicubic_of_the_same_kind_of_block_means(polar_truth):
    from climgen.evaluation import bicubic_reference, evaluate

    coarse = coarsen_dataset(polar_truth, FACTOR, conservation="area")
    refined = pipeline.synthesize(coarse, factor=FACTOR, conservation="area", tile_size=4)
    rows = {row["method"]: row for row in evaluate(polar_truth, refined, factor=FACTOR)}
    truth = polar_truth["tas"].values.astype(np.float64)
    weighted = bicubic_reference(truth, FACTOR, area_weights(polar_truth))
    assert rows["bicubic"]["rmse"] == pytest.approx(float(np.sqrt(np.mean((weighted - truth) ** 2))))
    assert rows["bicubic"]["rmse"] != pytest.approx(float(np.sqrt(np.mean((bicubic_reference(truth, FACTOR) - truth) ** 2))))

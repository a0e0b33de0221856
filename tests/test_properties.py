"""Property tests of the whole refinement path with the shipped model."""

import numpy as np
import xarray as xr
from hypothesis import example, given, settings
from hypothesis import strategies as st

from climgen import pipeline
from climgen.testing import assert_coarse_consistent, rough_field


@settings(max_examples=20, deadline=None)
@given(
    ny=st.integers(2, 20),
    nx=st.integers(2, 20),
    factor=st.sampled_from([2, 4]),
    scale=st.floats(1e-3, 1e4),
    offset=st.floats(-1e3, 1e3),
    missing=st.floats(0.0, 0.5),
    seed=st.integers(0, 2**16),
)
def test_any_field_is_refined_coarse_consistently(ny, nx, factor, scale, offset, missing, seed):
    rng = np.random.default_rng(seed)
    values = rough_field((ny, nx), seed=seed, smoothness=rng.uniform(1, 4)) * scale + offset
    values[rng.random((ny, nx)) < missing] = np.nan
    ds = xr.Dataset(
        {"v": (("lat", "lon"), values.astype(np.float32), {"units": "1"})},
        coords={"lat": np.linspace(-5, 5, ny) if ny > 1 else [0.0], "lon": np.linspace(0, 9, nx)},
    )
    out = pipeline.synthesize(ds, factor=factor, seed=seed)
    assert out["v"].shape == (ny * factor, nx * factor)
    assert_coarse_consistent(out["v"], ds["v"], factor, rtol=2e-6)
    depth = out["refinement_depth"].values
    assert depth.min() >= 0 and depth.max() <= factor.bit_length() - 1


@settings(max_examples=25, deadline=None)
@given(west=st.floats(-179.0, 150.0), width=st.floats(5.0, 29.0), seed=st.integers(0, 1000))
@example(west=-10.5, width=10.0, seed=0)  # a covariate across Greenwich for a 0..360 input ending at 359.7
def test_covariate_longitude_convention_round_trips(west, width, seed):
    """A covariate in -180..180 or in 0..360 aligns to the same fine values, for inputs in either."""
    from climgen.grid import find_spatial_axes
    from climgen.pipeline import _fine_axes, align_covariate

    lons = np.linspace(west, west + width, 12)
    covariate_lons = np.linspace(west - 2, west + width + 2, 40)
    values = rough_field((20, 40), seed=seed)
    base = xr.DataArray(values, dims=("lat", "lon"), coords={"lat": np.linspace(-6, 6, 20), "lon": covariate_lons})
    shifted = base.assign_coords(lon=covariate_lons % 360).sortby("lon")
    results = []
    for input_lons in (lons, lons % 360):
        if np.any(np.diff(input_lons) <= 0):
            continue  # a 0..360 domain across Greenwich is rejected elsewhere (seam error)
        ds = xr.Dataset({"v": (("lat", "lon"), np.zeros((4, 12)))}, coords={"lat": np.linspace(-4, 4, 4), "lon": input_lons})
        axes = find_spatial_axes(ds)
        fine = _fine_axes(ds, axes, 2)
        for covariate in (base, shifted):
            if (
                np.any(np.diff(covariate["lon"].values) <= 0)
                or (covariate["lon"].values.max() - covariate["lon"].values.min()) > 180
            ):
                continue  # the covariate itself wraps: not comparable
            results.append(align_covariate(covariate, "c", axes, fine))
    for result in results[1:]:
        np.testing.assert_allclose(result, results[0], atol=1e-9)

"""Property tests of the whole refinement path with the shipped model."""

import numpy as np
import xarray as xr
from hypothesis import given, settings
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

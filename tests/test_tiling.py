"""Tiling and blending: with a model that is exact under tiling, tiled equals untiled."""

import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from climgen.models.generator import BicubicBaseline, bicubic_upsample, project_to_coarse
from climgen.refine import TileRefiner, project_blocks
from climgen.testing import rough_field
from climgen.tiling import TileLayout, blend_weights, fine_slices


def _untiled_bicubic(field: np.ndarray, factor: int) -> np.ndarray:
    coarse = torch.tensor(field)[None, None]
    fine = project_to_coarse(bicubic_upsample(coarse, factor), coarse)[0, 0].double().numpy()
    return project_blocks(fine, field, factor)


@settings(max_examples=25, deadline=None)
@given(
    ny=st.integers(5, 40),
    nx=st.integers(5, 40),
    tile=st.integers(4, 24),
    halo=st.sampled_from([4, 6, 8]),
    factor=st.sampled_from([2, 4]),
    merge=st.integers(1, 3),
)
def test_tiled_equals_untiled_for_a_local_model(ny, nx, tile, halo, factor, merge):
    field = rough_field((ny, nx), seed=ny * 100 + nx).astype(np.float32)
    layout = TileLayout((ny, nx), tile, halo, merge)
    refiner = TileRefiner(BicubicBaseline(coarse_consistent=True), factor, layout)
    depth = np.full(layout.grid_shape, factor.bit_length() - 1)
    tiled = refiner.refine(field[None], depth, None, [(0,)])[0]
    np.testing.assert_allclose(tiled, _untiled_bicubic(field, factor), atol=2e-5)


@pytest.mark.parametrize("tile, halo", [(8, 4), (16, 8), (7, 6)])
def test_blend_weights_partition_unity(tile, halo):
    layout = TileLayout((30, 23), tile, halo)
    total = np.zeros((30 * 2, 23 * 2))
    for part in layout:
        weights = blend_weights(part, layout, 2)
        target = fine_slices(part.blend, 2)
        total[target] += weights
    assert total.min() > 0
    interior = total[halo * 2 : -halo * 2, halo * 2 : -halo * 2]
    np.testing.assert_allclose(interior, 1.0, atol=1e-9)


# random tile grids of 8-cell tiles (the last row cut short), grouped in up to 4 x 4
GRIDS = dict(rows=st.integers(1, 7), cols=st.integers(1, 7), merge=st.integers(1, 4), seed=st.integers(0, 999))


@settings(max_examples=40, deadline=None)
@given(**GRIDS, full=st.integers(1, 3), margin=st.sampled_from([0, 11]))
def test_model_calls_chain_each_tile_to_its_depth_and_never_cost_more_than_uniform(rows, cols, merge, full, seed, margin):
    from climgen.depth.complexity import stage_cost

    layout = TileLayout((rows * 8 - 3, cols * 8), 8, 4, merge, call_margin=margin)
    depth = np.random.default_rng(seed).integers(0, full + 1, layout.grid_shape)
    for tile in layout:
        group = layout.padded_window(*layout.group_ranges(tile))
        chain = layout.group_calls(*layout.group_ranges(tile), depth)[(tile.row, tile.col)]
        if depth[tile.row, tile.col] == 0:
            assert chain == []
            continue
        # stages 1..depth, each call inside its parent, the tile's own window inside every call
        assert chain[0].first == 1 and chain[0].parent is None
        assert chain[-1].first <= depth[tile.row, tile.col] <= chain[-1].last
        for parent, call in zip(chain[:-1], chain[1:], strict=True):
            assert call.first == parent.last + 1 and call.parent is parent
        for call in chain:
            for own, window, parent, outer in zip(tile.padded, call.window, (call.parent or call).window, group, strict=True):
                assert outer.start <= parent.start <= window.start <= own.start
                assert own.stop <= window.stop <= parent.stop <= outer.stop
    calls = layout.model_calls(depth)
    separate = float((layout.padded_areas() * stage_cost(depth)).sum())
    uniform = sum(call.work for call in layout.model_calls(np.full(layout.grid_shape, full)))
    if margin == 0:  # with a margin, sharing may process more cells to compute fewer margins
        assert sum(call.work for call in calls) <= min(separate, uniform)
    if merge == 1:  # no sharing: one call per refined tile, all its stages at once
        assert len(calls) == (depth > 0).sum() and all(call.first == 1 for call in calls)


@settings(max_examples=40, deadline=None)
@given(**GRIDS, halo=st.sampled_from([2, 4, 10]), full=st.integers(1, 3))
# a halo wider than a tile: one tile's own later window holds its neighbour's, which must not
# take its depth (the neighbour would get a window of its own, a call more)
@example(rows=6, cols=5, merge=2, seed=483, halo=10, full=2)
def test_tiles_inside_a_deeper_window_take_its_depth_at_no_cost(rows, cols, merge, halo, full, seed):
    rng = np.random.default_rng(seed)
    layout = TileLayout((rows * 8 - 3, cols * 8), 8, halo, merge, later_halo=[None, halo // 2][seed % 2])
    depth = rng.integers(0, full + 1, layout.grid_shape)
    keep = rng.random(layout.grid_shape) < 0.2
    deepened = layout.deepen_within_windows(depth, keep)
    assert layout.model_calls(deepened) == layout.model_calls(depth)  # the same work
    assert (deepened >= depth).all() and (deepened[keep] == depth[keep]).all()
    np.testing.assert_array_equal(layout.deepen_within_windows(deepened, keep), deepened)
    if merge == 1:  # nothing is shared
        np.testing.assert_array_equal(deepened, depth)


@settings(max_examples=40, deadline=None)
@given(**GRIDS, halo=st.sampled_from([2, 5, 8]), full=st.integers(2, 3))
# narrower later windows tipped this group into separate windows a stage early (14,096 against
# 13,712 cells of work); such a group now keeps the full halo
@example(rows=5, cols=2, merge=3, halo=8, full=3, seed=999)
def test_windows_opened_by_later_stages_are_narrower_and_cost_no_more(rows, cols, merge, halo, full, seed):
    shape = (rows * 8 - 3, cols * 8)
    wide, narrow = TileLayout(shape, 8, halo, merge), TileLayout(shape, 8, halo, merge, later_halo=halo // 2)
    depth = np.random.default_rng(seed).integers(0, full + 1, wide.grid_shape)
    wide_calls, narrow_calls = wide.model_calls(depth), narrow.model_calls(depth)
    assert sum(call.work for call in narrow_calls) <= sum(call.work for call in wide_calls)
    if np.all(depth == full):  # uniform depth: every call continues through all stages
        assert len(narrow_calls) == len(wide_calls)
    for tile in narrow:
        chain = narrow.group_calls(*narrow.group_ranges(tile), depth)[(tile.row, tile.col)]
        for call in chain:  # each call inside its parent, holding the tile's own window at its stage
            own = narrow.stage_window(tile, call.first)
            for inner, window, parent in zip(own, call.window, (call.parent or call).window, strict=True):
                assert parent.start <= window.start <= inner.start and inner.stop <= window.stop <= parent.stop
        if chain:  # the last call covers the margin the tile blends over
            assert all(w.start <= b.start and b.stop <= w.stop for b, w in zip(tile.blend, chain[-1].window, strict=True))


def test_tiles_share_a_window_where_the_models_margin_makes_their_own_cost_more():
    """Three of a group's four top tiles go a stage deeper: their own windows hold fewer cells
    than the window of their bounding box, but with the 11 cells the network computes around
    each window (at the second stage's resolution) one shared window costs less."""
    depth = np.ones((4, 4), dtype=np.int8)
    depth[0, [0, 1, 3]] = 2
    plain = TileLayout((64, 64), 16, 4, 4, later_halo=2)
    with_margin = TileLayout((64, 64), 16, 4, 4, later_halo=2, call_margin=11)
    second = {
        name: [c for c in layout.model_calls(depth) if c.last == 2]
        for name, layout in [("plain", plain), ("margin", with_margin)]
    }
    assert len(second["plain"]) == 3 and len(second["margin"]) == 1
    # the tile the shared window spans keeps its own depth: its chain ends at the first stage
    chain = with_margin.group_calls(range(4), range(4), depth)[(0, 2)]
    assert [(call.first, call.last) for call in chain] == [(1, 1)]


def test_later_halo_must_cover_the_blend_margin():
    from climgen.errors import ConfigError

    with pytest.raises(ConfigError, match="later_halo must be in 4..8"):
        TileLayout((32, 32), 8, 8, 2, later_halo=3)


def test_a_tile_in_the_shared_window_of_three_deep_neighbours_is_refined_as_deep():
    layout = TileLayout((16, 16), 8, 4, merge=2)
    depth = np.array([[2, 2], [2, 0]])
    # one padded window (16 + 2 * 4 clipped to 16 cells a side) is smaller than three of 12 x 12
    np.testing.assert_array_equal(layout.deepen_within_windows(depth), [[2, 2], [2, 2]])
    np.testing.assert_array_equal(layout.deepen_within_windows(depth, keep=depth == 0), depth)
    # a deep tile alone keeps its own window: its neighbours are not inside it
    np.testing.assert_array_equal(layout.deepen_within_windows(np.array([[2, 1], [1, 0]])), [[2, 1], [1, 1]])


def test_shared_windows_give_the_same_numbers_for_any_region():
    """A tile's window depends on the depth map only: a region refined from its own context
    equals the same region of the whole domain, bit for bit, and sharing windows changes the
    field by far less than its detail."""
    from climgen.models.checkpoint import load_checkpoint

    model = load_checkpoint("default").module
    field = 300 + 20 * rough_field((40, 48), seed=5)
    depth = np.random.default_rng(1).integers(0, 3, (5, 6))
    depth[:2, :2] = 2  # one full group at depth 2 and more of depth 1
    depth[2:4, 2:6] = 1
    shared = TileRefiner(model, 4, TileLayout((40, 48), 8, 4, merge=2))
    whole = shared.refine(field[None], depth, None, [(0,)])[0]
    region = (slice(13, 29), slice(7, 40))
    context = shared.context_for(region)
    part = shared.refine(field[None, context[0], context[1]], depth, None, [(0,)], region, (context[0].start, context[1].start))
    np.testing.assert_array_equal(part[0], whole[fine_slices(region, 4)])
    separate = TileRefiner(model, 4, TileLayout((40, 48), 8, 4, merge=1)).refine(field[None], depth, None, [(0,)])[0]
    detail = whole - np.repeat(np.repeat(field, 4, 0), 4, 1)
    assert 0 < np.sqrt(np.mean((whole - separate) ** 2)) < 0.1 * detail.std()


def test_tiles_cover_the_domain_once():
    layout = TileLayout((37, 50), 16, 4)
    cover = np.zeros((37, 50), dtype=int)
    for tile in layout:
        cover[tile.core] += 1
        assert tile.padded[0].start >= 0 and tile.padded[1].stop <= 50
    assert (cover == 1).all()
    assert layout.grid_shape == (3, 4)


def test_domain_smaller_than_a_tile_is_one_tile():
    layout = TileLayout((3, 2), 32, 8)
    tiles = list(layout)
    assert len(tiles) == 1 and tiles[0].core == (slice(0, 3), slice(0, 2))


@pytest.mark.parametrize("tile", [8, 16])
def test_no_seams_at_tile_borders_with_the_shipped_model(tile):
    """Curvature across tile borders is no larger than across other coarse-cell edges."""
    import xarray as xr

    from climgen import pipeline

    factor = 4
    field = rough_field((64, 64), seed=11, smoothness=2.5) * 100
    ds = xr.Dataset(
        {"v": (("lat", "lon"), field.astype(np.float32))}, coords={"lat": np.linspace(0, 10, 64), "lon": np.linspace(0, 10, 64)}
    )
    out = pipeline.synthesize(ds, factor=factor, tile_size=tile, adaptive=False)["v"].values.astype(np.float64)
    for values in (out, out.T):
        curvature = np.abs(values[:, 2:] - 2 * values[:, 1:-1] + values[:, :-2])
        edge = np.arange(1, values.shape[1] - 1)  # curvature column k sits at fine column k + 1
        cell_edges = np.isin(edge % factor, [0, factor - 1])
        tile_edges = np.isin(edge % (tile * factor), [0, tile * factor - 1])
        ratio = curvature[:, tile_edges].mean() / curvature[:, cell_edges & ~tile_edges].mean()
        assert ratio < 1.25, ratio


def test_noise_windows_do_not_depend_on_how_the_domain_is_cut():
    from climgen.noise import NOISE_BLOCK, noise_window

    whole = noise_window((1, "tas", 0, 0), 2, slice(0, 3 * NOISE_BLOCK), slice(10, 150))
    part = noise_window((1, "tas", 0, 0), 2, slice(50, 140), slice(70, 133))
    np.testing.assert_array_equal(part, whole[50:140, 60:123])
    other_member = noise_window((1, "tas", 0, 1), 2, slice(50, 140), slice(70, 133))
    other_stage = noise_window((1, "tas", 0, 0), 3, slice(50, 140), slice(70, 133))
    assert not np.array_equal(part, other_member) and not np.array_equal(part, other_stage)
    assert abs(whole.mean()) < 0.05 and abs(whole.std() - 1) < 0.05


def test_overlapping_noise_windows_draw_each_block_once():
    from climgen.noise import NOISE_BLOCK, noise_window

    blocks: dict = {}
    first = noise_window((1, "tas", 0, 0), 2, slice(0, 2 * NOISE_BLOCK), slice(0, 2 * NOISE_BLOCK), blocks)
    drawn = dict(blocks)
    assert len(drawn) == 4
    # a window inside the first reuses its blocks (the very arrays) and draws nothing new
    inside = noise_window((1, "tas", 0, 0), 2, slice(10, 100), slice(20, 90), blocks)
    assert blocks.keys() == drawn.keys() and all(blocks[k] is drawn[k] for k in drawn)
    np.testing.assert_array_equal(inside, first[10:100, 20:90])
    np.testing.assert_array_equal(inside, noise_window((1, "tas", 0, 0), 2, slice(10, 100), slice(20, 90)))
    # other keys or stages are other blocks
    noise_window((1, "tas", 0, 1), 2, slice(10, 100), slice(20, 90), blocks)
    noise_window((1, "tas", 0, 0), 3, slice(10, 100), slice(20, 90), blocks)
    assert len(blocks) == 12


def test_projection_in_place_equals_the_copy():
    field = rough_field((6, 5), seed=3)
    fine = np.random.default_rng(0).normal(size=(24, 20)) + 4
    copy = project_blocks(fine, field, 4)
    projected = project_blocks(fine, field, 4, in_place=True)
    assert projected is fine
    np.testing.assert_array_equal(projected, copy)
    np.testing.assert_allclose(projected.reshape(6, 4, 5, 4).mean(axis=(1, 3)), field, rtol=0, atol=1e-12)


def test_the_plan_gives_the_layout_the_margin_of_the_models_unpadded_convolutions():
    from climgen.pipeline import make_config, plan
    from climgen.testing import make_dataset

    job = plan(make_dataset("latlon", shape=(40, 40), times=1, seed=0), make_config(factor=4))
    assert job.prepared.layout.call_margin == job.checkpoint.module.window_margin == job.checkpoint.module.stage_network.reach
    previous = plan(make_dataset("latlon", shape=(40, 40), times=1, seed=0), make_config(factor=4, model="amsgm-multibranch"))
    assert previous.prepared.layout.call_margin == 0  # padded convolutions: no margin

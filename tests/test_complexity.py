"""Complexity scores and the depth policy."""

import numpy as np
import pytest

from climgen.depth.complexity import (
    FINE_STAGES_SCORE,
    SECOND_STAGE_SCORE,
    ComplexityScores,
    choose_depth,
    combine_scores,
    stage_cost,
    tile_components,
)
from climgen.errors import ConfigError
from climgen.testing import rough_field
from climgen.tiling import TileLayout


def _mixed_field():
    field = np.zeros((32, 32)) + np.linspace(0, 1, 32)[None, :]
    field[:, 16:] += 5 * rough_field((32, 16), seed=3, smoothness=1.5)
    return field


def test_rough_tiles_score_higher_than_smooth_ones():
    scores = tile_components(_mixed_field(), TileLayout((32, 32), 16, 4))
    assert scores.score[:, 1].min() > scores.score[:, 0].max()
    for name in ("gradient", "spectral", "variance"):
        assert scores.components[name][:, 1].mean() > scores.components[name][:, 0].mean()
    assert ((scores.score >= 0) & (scores.score < 1)).all()


def test_scores_do_not_depend_on_units():
    layout = TileLayout((32, 32), 16, 4)
    kelvin = tile_components(_mixed_field() + 273.15, layout).score
    scaled = tile_components(_mixed_field() * 1000 - 50, layout).score
    np.testing.assert_allclose(kelvin, scaled, rtol=1e-6, atol=1e-9)


def test_constant_and_missing_tiles_get_depth_zero():
    field = _mixed_field()
    field[:16, :16] = 7.0
    field[16:, :16] = np.nan
    scores = tile_components(field, TileLayout((32, 32), 16, 4))
    depth = choose_depth(scores, full_depth=3)
    assert depth[0, 0] == 0 and depth[1, 0] == 0
    assert depth[:, 1].min() > 0
    assert choose_depth(scores, 3, adaptive=False)[0, 0] == 0


@pytest.mark.parametrize(
    ("full_depth", "without_covariates", "with_covariates", "at_fronts"),
    [
        (1, [0, 1, 1, 1], [0, 1, 1, 1], [1, 1, 1, 1]),
        (2, [0, 1, 2, 2], [0, 1, 2, 2], [2, 2, 2, 2]),
        (3, [1, 1, 2, 3], [1, 2, 3, 3], [2, 2, 2, 3]),
        (4, [1, 1, 2, 4], [1, 3, 4, 4], [2, 2, 2, 4]),
    ],
)
def test_finer_stages_need_a_high_score_unless_covariates_or_a_front_call_for_them(
    full_depth, without_covariates, with_covariates, at_fronts
):
    score = np.array([[0.3, 0.6, 0.8, 0.9]])
    assert score[0, 1] < SECOND_STAGE_SCORE <= score[0, 2] < FINE_STAGES_SCORE <= score[0, 3]
    constant = np.zeros(score.shape, dtype=bool)
    alone = ComplexityScores({"gradient": score}, score, constant)
    guided = ComplexityScores({"gradient": score, "covariate": score}, score, constant)
    fronts = ComplexityScores({"gradient": score}, score, constant, np.ones(score.shape, dtype=bool))
    assert choose_depth(alone, full_depth).tolist() == [without_covariates]
    assert choose_depth(guided, full_depth).tolist() == [with_covariates]
    assert choose_depth(fronts, full_depth).tolist() == [at_fronts]
    # budgets and uniform depth keep their own rules
    assert (choose_depth(alone, full_depth, adaptive=False) == full_depth).all()
    assert choose_depth(alone, full_depth, budget=1.0).max() == full_depth
    assert (choose_depth(fronts, full_depth, budget=0.5) == choose_depth(alone, full_depth, budget=0.5)).all()


def test_fronts_are_tiles_where_cells_at_a_physical_bound_meet_cells_off_it():
    """Land fraction: sea (0) meets a coast in the first tile column, the middle is partly land
    throughout, land (1) meets the coast in the last; fronts only where the bounds are known."""
    layout = TileLayout((32, 48), 16, 4)
    land = np.clip(0.5 + 0.2 * rough_field((32, 48), seed=4), 0.05, 0.95)
    land[:, :8] = 0.0
    land[:, 40:] = 1.0
    scores = tile_components(land, layout, bounds=(0.0, 1.0))
    assert scores.fronts.tolist() == [[True, False, True], [True, False, True]]
    assert not tile_components(land, layout).fronts.any()  # bounds unknown
    assert not tile_components(land * 0.5 + 0.25, layout, bounds=(0.0, 1.0)).fronts.any()  # all inside
    # in percent: the same fronts; rounding noise at a bound still counts as at it
    np.testing.assert_array_equal(tile_components(land * 100, layout, bounds=(0.0, 100.0)).fronts, scores.fronts)
    noisy = land + 1e-9 * np.random.default_rng(0).random(land.shape)
    np.testing.assert_array_equal(tile_components(noisy, layout, bounds=(0.0, 1.0)).fronts, scores.fronts)
    # several fields (time steps): a tile is a front when it is one in any of them
    later = land.copy()
    later[:, 16:24] = 0.0  # the middle column of tiles meets the sea too
    combined = combine_scores([scores, tile_components(later, layout, bounds=(0.0, 1.0))])
    assert combined.fronts.all()


def test_covariate_roughness_raises_the_score():
    field = np.tile(np.linspace(0, 1, 32), (32, 1))
    covariate = np.zeros((1, 64, 64))
    covariate[0, :, 32:] = 1000 * rough_field((64, 32), seed=1, smoothness=1.0)
    scores = tile_components(field, TileLayout((32, 32), 16, 4), covariate, factor=2)
    assert scores.components["covariate"][:, 1].min() > scores.components["covariate"][:, 0].max()


@pytest.mark.parametrize("budget", [0.1, 0.3, 0.6, 1.0])
def test_budget_caps_the_cost_and_follows_the_score(budget):
    rng = np.random.default_rng(0)
    field = rough_field((64, 64), seed=5) * np.linspace(0, 3, 64)[None, :] ** 2
    scores = tile_components(field + rng.normal(0, 1e-3, field.shape), TileLayout((64, 64), 8, 4))
    depth = choose_depth(scores, full_depth=3, budget=budget)
    assert stage_cost(depth).sum() <= budget * stage_cost(3) * depth.size + 1e-9
    order = np.argsort(scores.score.ravel())
    assert (np.diff(depth.ravel()[order]) >= 0).all(), "depth must not decrease as score rises"
    if budget == 1.0:
        assert (depth == 3).all()


def test_uniform_is_full_depth_and_bad_budget_is_rejected():
    scores = tile_components(rough_field((32, 32)), TileLayout((32, 32), 8, 4))
    assert (choose_depth(scores, 2, adaptive=False) == 2).all()
    with pytest.raises(ConfigError):
        choose_depth(scores, 2, budget=0.0)
    with pytest.raises(ConfigError):
        choose_depth(scores, 2, budget=1.5)


def test_budget_weighted_by_tile_area():
    scores = tile_components(rough_field((40, 40), seed=2) * np.linspace(0, 2, 40)[None, :], TileLayout((40, 40), 16, 4))
    weights = TileLayout((40, 40), 16, 4).padded_areas()
    depth = choose_depth(scores, 2, budget=0.4, tile_weights=weights)
    assert (weights * stage_cost(depth)).sum() <= 0.4 * stage_cost(2) * weights.sum() + 1e-9


def test_budget_counts_the_windows_tiles_share():
    from climgen.depth.compute import window_cells

    layout = TileLayout((64, 64), 8, 4, merge=2)
    field = rough_field((64, 64), seed=5) * np.linspace(0, 3, 64)[None, :] ** 2
    scores = tile_components(field, layout)
    full = window_cells(layout, np.full(layout.grid_shape, 2))
    spent = []
    for budget in (0.2, 0.5, 0.8):
        depth = choose_depth(scores, 2, budget=budget, cost=lambda d: window_cells(layout, d))
        spent.append(window_cells(layout, depth))
        assert spent[-1] <= budget * full + 1e-9
    assert spent[0] < spent[1] < spent[2]

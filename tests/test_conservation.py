"""Exact coarse consistency inside physical bounds: block means, limits, and never farther
from a truth that respects them."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from climgen.conservation import clip_to_mean, project_blocks


def _block_means(fine: np.ndarray, factor: int) -> np.ndarray:
    ny, nx = fine.shape[0] // factor, fine.shape[1] // factor
    return fine.reshape(ny, factor, nx, factor).mean(axis=(1, 3))


def _fraction_truth(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """A land-fraction-like field: mostly exactly 0 or 1, with mixed cells between."""
    return np.clip(rng.normal(0.5, 0.8, shape), 0.0, 1.0)


def test_bounded_blocks_average_to_coarse_and_stay_inside():
    rng = np.random.default_rng(0)
    truth = _fraction_truth(rng, (32, 48))
    coarse = _block_means(truth, 4)
    guess = truth + rng.normal(0, 0.4, truth.shape)  # a refinement that overshoots both ways
    free = project_blocks(guess, coarse, 4)
    assert free.min() < -0.1 and free.max() > 1.1, "the plain projection leaves the bounds"
    bounded = project_blocks(guess, coarse, 4, bounds=(0.0, 1.0))
    assert bounded.min() >= 0.0 and bounded.max() <= 1.0
    np.testing.assert_allclose(_block_means(bounded, 4), coarse, atol=1e-12)


def test_blocks_inside_the_bounds_are_shifted_as_without_bounds():
    rng = np.random.default_rng(1)
    coarse = rng.uniform(10, 20, (6, 5))
    fine = np.kron(coarse, np.ones((4, 4))) + rng.normal(0, 0.5, (24, 20))
    np.testing.assert_array_equal(project_blocks(fine, coarse, 4, bounds=(0.0, None)), project_blocks(fine, coarse, 4))


def test_one_sided_bound_keeps_rain_non_negative_and_conserved():
    rng = np.random.default_rng(2)
    rain = np.where(rng.random((40, 40)) < 0.6, 0.0, rng.gamma(0.8, 5.0, (40, 40)))
    rain[:, :16] = 0.0  # a dry west
    coarse = _block_means(rain, 8)
    smooth = np.kron(coarse, np.ones((8, 8))) + rng.normal(0, 2.0, rain.shape)
    bounded = project_blocks(smooth, coarse, 8, bounds=(0.0, None))
    assert bounded.min() >= 0.0
    np.testing.assert_allclose(_block_means(bounded, 8), coarse, atol=1e-12)
    dry = coarse == 0
    assert dry.any() and np.all(bounded.reshape(5, 8, 5, 8).max(axis=(1, 3))[dry] == 0), "dry cells stay dry"


def test_coarse_values_outside_the_bounds_give_constant_blocks_and_missing_stay_missing():
    coarse = np.array([[-0.5, 0.5], [np.nan, 1.5]])
    fine = np.random.default_rng(3).normal(0.5, 1.0, (4, 4))
    out = project_blocks(fine, coarse, 2, bounds=(0.0, 1.0))
    np.testing.assert_array_equal(out[:2, :2], -0.5)
    np.testing.assert_array_equal(out[2:, 2:], 1.5)
    assert np.isnan(out[2:, :2]).all()
    assert 0.0 <= out[:2, 2:].min() and out[:2, 2:].max() <= 1.0
    np.testing.assert_allclose(out[:2, 2:].mean(), 0.5, atol=1e-12)


def test_in_place_projection_changes_the_array_it_is_given():
    rng = np.random.default_rng(4)
    coarse = rng.uniform(0, 1, (3, 3))
    fine = rng.normal(0.5, 1.0, (6, 6))
    expected = project_blocks(fine, coarse, 2, bounds=(0.0, 1.0))
    assert project_blocks(fine, coarse, 2, in_place=True, bounds=(0.0, 1.0)) is fine
    np.testing.assert_array_equal(fine, expected)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    factor=st.sampled_from([2, 4, 8]),
    spread=st.floats(0.01, 5.0),
    bounds=st.sampled_from([(0.0, 1.0), (0.0, None), (None, 1.0), (-1.0, 3.0)]),
)
def test_projection_never_moves_a_block_away_from_a_truth_inside_the_bounds(seed, factor, spread, bounds):
    """The bounded set is convex and holds the truth, so projecting onto it is non-expansive:
    every block ends at least as close to the truth as the plain projection left it."""
    rng = np.random.default_rng(seed)
    lower = -np.inf if bounds[0] is None else bounds[0]
    upper = np.inf if bounds[1] is None else bounds[1]
    truth = np.clip(rng.normal(0.5, 1.0, (3 * factor, 2 * factor)), lower, upper)
    coarse = _block_means(truth, factor)
    guess = truth + rng.normal(0, spread, truth.shape)
    free = project_blocks(guess, coarse, factor)
    bounded = project_blocks(guess, coarse, factor, bounds=bounds)
    assert bounded.min() >= lower - 1e-12 and bounded.max() <= upper + 1e-12
    np.testing.assert_allclose(_block_means(bounded, factor), coarse, atol=1e-10)

    def block_errors(field):
        return ((field - truth) ** 2).reshape(3, factor, 2, factor).sum(axis=(1, 3))

    assert np.all(block_errors(bounded) <= block_errors(free) + 1e-9)


def test_clip_to_mean_is_the_nearest_block_with_that_mean_inside_the_bounds():
    # by hand: [-1, .5, .5, 2] to mean .5 inside [0, 1] needs no shift: [0, .5, .5, 1]
    block = np.array([[[-1.0, 0.5], [0.5, 2.0]]])
    np.testing.assert_allclose(clip_to_mean(block, np.array([0.5]), 0.0, 1.0), [[[0.0, 0.5], [0.5, 1.0]]], atol=1e-12)
    # to mean .25: the shift -.5 takes the middle cells to 0 while 2 still clips to 1
    np.testing.assert_allclose(clip_to_mean(block, np.array([0.25]), 0.0, 1.0), [[[0.0, 0.0], [0.0, 1.0]]], atol=1e-12)
    # to mean .75: shift +.25 gives [0, .75, .75, 1], mean .625; the answer is shift +.5: [0, 1, 1, 1]
    np.testing.assert_allclose(clip_to_mean(block, np.array([0.75]), 0.0, 1.0), [[[0.0, 1.0], [1.0, 1.0]]], atol=1e-12)


@pytest.mark.parametrize("factor", [2, 16])
def test_large_factors_and_many_blocks_stay_exact(factor):
    rng = np.random.default_rng(5)
    truth = _fraction_truth(rng, (10 * factor, 12 * factor))
    coarse = _block_means(truth, factor)
    out = project_blocks(truth + rng.normal(0, 0.3, truth.shape), coarse, factor, bounds=(0.0, 1.0))
    assert out.min() >= 0.0 and out.max() <= 1.0
    np.testing.assert_allclose(_block_means(out, factor), coarse, atol=1e-12)

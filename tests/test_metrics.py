"""Metrics against hand-checkable cases, and the evaluate workflow and command."""

import json
import subprocess
import sys

import numpy as np
import pytest
import xarray as xr

from climgen import metrics
from climgen.errors import InputError
from climgen.evaluation import evaluate
from climgen.grid import coarsen_dataset
from climgen.testing import make_dataset, rough_field


def test_pointwise_scores():
    truth = np.zeros((4, 4))
    prediction = np.full((4, 4), 2.0)
    prediction[0, 0] = np.nan  # missing cells are left out
    assert metrics.rmse(prediction, truth) == 2.0
    assert metrics.bias(prediction, truth) == 2.0
    assert metrics.mae(-prediction, truth) == 2.0
    truth[0, 1] = 10.0
    assert metrics.psnr(prediction, truth) == pytest.approx(20 * np.log10(10 / metrics.rmse(prediction, truth)))
    assert np.isnan(metrics.psnr(prediction, np.zeros((4, 4))))  # a constant truth has no peak


def test_structural_similarity_ranks_a_blurred_field_below_the_truth():
    truth = rough_field((64, 64), seed=1, smoothness=2.0)
    assert metrics.ssim(truth, truth) == pytest.approx(1.0)
    from scipy.ndimage import uniform_filter

    assert metrics.ssim(uniform_filter(truth, 5), truth) < 0.9
    assert metrics.ms_ssim(truth, truth) is None  # too small for five scales
    big = rough_field((176, 176), seed=2)
    assert metrics.ms_ssim(big, big) == pytest.approx(1.0)


def test_power_spectrum_slope_and_spectral_error():
    field = rough_field((128, 128), seed=3, smoothness=3.0)
    k, power = metrics.power_spectrum(field)
    slope = np.polyfit(np.log(k[2:40]), np.log(power[2:40]), 1)[0]
    assert -3.6 < slope < -2.4
    errors = metrics.spectral_error_per_octave(field, field)
    assert errors and all(value == pytest.approx(0.0) for value in errors.values())
    from scipy.ndimage import uniform_filter

    blurred = metrics.spectral_error_per_octave(uniform_filter(field, 4), field)
    assert list(blurred.values())[-1] > list(blurred.values())[0]  # blur hurts the top octave most


def test_spectra_see_no_power_from_the_domain_edges():
    """A smooth gradient across a regional domain (warm south, cold north) has no fine detail;
    a Fourier transform, which wraps the field round, puts its edge jump into every
    wavenumber, the cosine transform does not."""
    y, x = np.meshgrid(np.linspace(0, 1, 64), np.linspace(0, 1, 96), indexing="ij")
    ramp = 30.0 * y + 5.0 * x
    detail = 0.1 * rough_field((64, 96), seed=4, smoothness=1.0)
    wrapped = np.abs(np.fft.fft2(ramp - ramp.mean())) ** 2
    ky, kx = np.abs(np.fft.fftfreq(64))[:, None], np.abs(np.fft.fftfreq(96))[None, :]
    assert wrapped[np.maximum(ky, kx) > 0.25].mean() / (64 * 96) > 1e5 * metrics.top_octave_power(detail)
    assert metrics.top_octave_power(ramp) < 0.1 * metrics.top_octave_power(detail)
    assert metrics.top_octave_power(ramp + detail) == pytest.approx(metrics.top_octave_power(detail), rel=0.1)
    k, power = metrics.power_spectrum(ramp)
    assert power[k > 0.25].max() < 1e-3 * power[0]


def test_coarse_consistency_error():
    coarse = np.arange(4.0).reshape(2, 2)
    fine = np.kron(coarse, np.ones((2, 2)))
    assert metrics.coarse_consistency_error(fine, coarse, 2) == 0.0
    fine[0, 0] += 4
    assert metrics.coarse_consistency_error(fine, coarse, 2) == 1.0
    fine[1, 1] = np.nan  # a gap where the coarse field has a value fails the check
    assert metrics.coarse_consistency_error(fine, coarse, 2) == np.inf
    assert np.isnan(metrics.coarse_consistency_error(np.full((4, 4), np.nan), np.full((2, 2), np.nan), 2))


def test_data_arrays_are_compared_by_their_dimensions_not_their_storage_order():
    """A truth stored (x, y) against a prediction stored (y, x), and members whose realization
    comes last, are compared cell by cell and member by member."""
    rng = np.random.default_rng(3)
    truth = xr.DataArray(rng.normal(size=(3, 4)), dims=("y", "x"))
    prediction = truth + xr.DataArray(rng.normal(size=(3, 4)), dims=("y", "x"))
    assert metrics.rmse(prediction, truth.T) == metrics.rmse(prediction.values, truth.values)
    members = xr.DataArray(rng.normal(size=(5, 3, 4)), dims=("realization", "y", "x"))
    last = members.transpose("y", "x", "realization")
    assert metrics.crps(last, truth) == metrics.crps(members.values, truth.values)
    assert metrics.spread_skill(last, truth.T) == metrics.spread_skill(members.values, truth.values)


def test_keyword_arguments_and_infinities_are_scored_as_given():
    """Integers given by keyword are scored as floats too (uint8 differences would wrap round),
    and a prediction that blew up is infinitely wrong, not missing."""
    low, high = np.array([0, 255], np.uint8), np.array([255, 0], np.uint8)
    assert metrics.rmse(prediction=low, truth=high) == metrics.rmse(low, high) == 255.0
    assert metrics.rmse(np.array([np.inf, 1.0]), np.array([1.0, 1.0])) == np.inf
    assert metrics.rmse(np.array([np.nan, 1.0]), np.array([1.0, 1.0])) == 0.0


def test_ensemble_scores():
    truth = np.zeros((8, 8))
    identical = np.stack([np.ones((8, 8))] * 3)
    assert metrics.crps(identical, truth) == pytest.approx(1.0)  # equals MAE when members agree
    assert metrics.diversity(identical) == 0.0
    spread = np.stack([np.full((8, 8), v) for v in (-1.0, 1.0)])
    assert metrics.crps(spread, truth) == pytest.approx(1.0 - 1.0)  # fair CRPS of a +-1 pair around 0
    assert metrics.diversity(spread) == pytest.approx(2.0)
    scores = metrics.spread_skill(spread, truth)
    assert scores["rmse_of_mean"] == 0.0 and scores["spread"] == pytest.approx(np.sqrt(2.0))


def test_area_weighted_rmse_counts_each_cell_by_its_area():
    truth = np.zeros((2, 3))
    prediction = np.array([[1.0, 1.0, 1.0], [3.0, 3.0, np.nan]])
    equal = (np.ones(2), np.ones(3))
    assert metrics.area_weighted_rmse(prediction, truth, equal) == pytest.approx(metrics.rmse(prediction, truth))
    # the first row three times the area of the second: (3 * 3 * 1 + 2 * 9) / (3 * 3 + 2)
    weighted = metrics.area_weighted_rmse(prediction, truth, (np.array([3.0, 1.0]), np.ones(3)))
    assert weighted == pytest.approx(np.sqrt(27.0 / 11.0))


def test_evaluate_rows_and_grid_check(hsurf_truth, hsurf_coarse):
    refined = hsurf_coarse.climgen.synthesize(factor=4)
    rows = evaluate(hsurf_truth, refined, factor=4)
    assert [row["method"] for row in rows] == ["prediction", "bicubic"]
    assert rows[0]["rmse"] < rows[1]["rmse"]
    assert rows[0]["rmse_area_weighted"] < rows[1]["rmse_area_weighted"]
    members = evaluate(hsurf_truth, hsurf_coarse.climgen.synthesize(factor=4, members=4), factor=4)[0]
    # samples: the truth could be one more member, so the ensemble's CRPS beats one field's MAE
    assert members["diversity"] > 0 and members["crps"] < rows[0]["mae"]
    with pytest.raises(InputError, match="grids differ"):
        evaluate(hsurf_truth.isel(rlat=slice(0, 40)), refined)
    with pytest.raises(InputError, match="no variable to compare"):
        evaluate(make_dataset("latlon", shape=(8, 8)), make_dataset("latlon", shape=(8, 8)))
    with pytest.raises(InputError, match=r"refined x4 \(its provenance\), but bicubic was asked for at x8"):
        evaluate(hsurf_truth, refined, factor=8)  # bicubic of another factor would flatter the prediction


def test_evaluate_command(hsurf_coarse_file, tmp_path, climgen_cli):
    from pathlib import Path

    run = climgen_cli
    assert run("synthesize", hsurf_coarse_file, tmp_path / "fine.nc", "--factor", 4).returncode == 0
    truth = Path(__file__).parent / "data" / "hsurf_east_africa.nc"
    result = run("evaluate", "--truth", truth, "--pred", tmp_path / "fine.nc", "--factor", 4, "--out", tmp_path / "scores")
    assert result.returncode == 0, result.stderr
    assert "| HSURF | prediction |" in result.stdout and "| HSURF | bicubic |" in result.stdout
    rows = json.loads((tmp_path / "scores" / "scores.json").read_text())
    assert {row["method"] for row in rows} == {"prediction", "bicubic"}
    assert (tmp_path / "scores" / "evaluation_HSURF.png").stat().st_size > 20_000
    # another model's scores into the same folder: refused before scoring, kept, unless --overwrite
    again = ("evaluate", "--truth", truth, "--pred", tmp_path / "fine.nc", "--out", tmp_path / "scores")
    result = run(*again)
    assert result.returncode == 2 and "--overwrite" in result.stderr and result.stdout == ""
    assert json.loads((tmp_path / "scores" / "scores.json").read_text()) == rows
    assert run(*again, "--overwrite").returncode == 0
    # a truth whose size is not a multiple of the factor: coarsening drops the trailing rows,
    # and evaluate compares the cells the prediction covers
    import xarray as xr

    with xr.open_dataset(truth) as whole:
        uneven = whole.isel(rlat=slice(0, whole.sizes["rlat"] - 3))
        uneven.to_netcdf(tmp_path / "uneven.nc")
        rows_left = uneven.sizes["rlat"] // 4 * 4
    assert run("coarsen", tmp_path / "uneven.nc", tmp_path / "uneven_coarse.nc", "--factor", 4).returncode == 0
    assert run("synthesize", tmp_path / "uneven_coarse.nc", tmp_path / "uneven_fine.nc").returncode == 0
    result = run("evaluate", "--truth", tmp_path / "uneven.nc", "--pred", tmp_path / "uneven_fine.nc", "--out", tmp_path / "s2")
    assert result.returncode == 0, result.stderr
    assert f"comparing the {rows_left} x" in result.stdout and "that the prediction covers" in result.stdout
    assert (tmp_path / "s2" / "evaluation_HSURF.png").exists()
    # without --factor, bicubic is scored at the prediction's own factor (its provenance says x4)
    assert "| HSURF | bicubic |" in result.stdout


def test_frechet_distance_is_zero_for_the_truth_and_ranks_degradations():
    from scipy import ndimage

    from climgen.testing import rough_field

    truth = 500 * rough_field((96, 96), seed=5)
    rng = np.random.default_rng(1)
    same = metrics.frechet_distance(truth, truth)
    faint_noise = metrics.frechet_distance(truth + rng.normal(0, 0.5, truth.shape), truth)
    blurred = metrics.frechet_distance(ndimage.gaussian_filter(truth, 2), truth)
    assert same < 1e-9 and faint_noise < 0.01 < blurred
    # unit-free: the same change in other units gives the same distance
    assert np.isclose(metrics.frechet_distance(ndimage.gaussian_filter(truth, 2) / 1000 + 7, truth / 1000 + 7), blurred)
    with pytest.raises(ValueError, match="20 patches"):
        metrics.frechet_distance(truth[:24, :24], truth[:24, :24])


def test_evaluate_accepts_refined_polar_cells_and_refuses_shifted_grids():
    """Refined cells split each coarse cell equally: where the truth's polar cell reaches the
    pole (Gaussian grids), refined centres move by a fraction of a cell, still inside the
    truth's cells; a grid shifted by more than half a cell is another grid."""
    from climgen.grid import coarsen_dataset

    truth = make_dataset("latlon", shape=(16, 8))
    edges = np.concatenate([[-90.0], -87.65 + 1.86 * np.arange(16)])
    centres = np.concatenate([[-88.57], 0.5 * (edges[1:-1] + edges[2:])])
    truth = truth.assign_coords(lat=("lat", centres, truth["lat"].attrs | {"bounds": "lat_bnds"}))
    truth["lat_bnds"] = (("lat", "bnds"), np.stack([edges[:-1], edges[1:]], axis=1))
    refined = coarsen_dataset(truth, 4).climgen.synthesize(factor=4)
    assert abs(float(refined["lat"][0] - truth["lat"][0])) > 0.1, "the polar cell's refined centres moved"
    assert [row["method"] for row in evaluate(truth, refined, factor=4)] == ["prediction", "bicubic"]
    with pytest.raises(InputError, match="coordinates differ"):
        evaluate(truth, refined.assign_coords(lat=refined["lat"] + 1.0))


def _pairwise_crps(members, truth):
    """The fair CRPS from all member pairs (members^2 x cells in memory): the reference."""
    count = members.shape[0]
    skill = np.abs(members - truth[None]).mean(axis=0)
    spread = np.abs(members[:, None] - members[None, :]).sum(axis=(0, 1)) / (2 * count * (count - 1))
    return float((skill - spread).mean())


def test_crps_from_sorted_members_matches_all_pairs_and_stays_small():
    rng = np.random.default_rng(3)
    members, truth = rng.normal(size=(7, 20, 30)), rng.normal(size=(20, 30))
    assert metrics.crps(members, truth) == pytest.approx(_pairwise_crps(members, truth), rel=1e-12)
    import tracemalloc

    big_members, big_truth = rng.normal(size=(10, 256, 256)), rng.normal(size=(256, 256))
    tracemalloc.start()
    metrics.crps(big_members, big_truth)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 6 * big_members.nbytes  # the pairwise form needs 10x the members' size


def _rank_by_definition(members, truth):
    """Rank of the truth among the members cell by cell, ties shared evenly (a plain loop)."""
    count = members.shape[0]
    histogram = np.zeros(count + 1)
    for index in np.ndindex(truth.shape):
        values = members[(slice(None), *index)]
        below, tied = int((values < truth[index]).sum()), int((values == truth[index]).sum())
        histogram[below : below + tied + 1] += 1 / (tied + 1)
    return histogram / truth.size


def test_rank_histogram_is_flat_for_a_calibrated_ensemble_and_u_shaped_for_a_narrow_one():
    rng = np.random.default_rng(5)
    truth = rng.normal(size=(60, 60))
    calibrated = rng.normal(size=(9, 60, 60))
    histogram = metrics.rank_histogram(calibrated, truth)
    assert histogram.sum() == pytest.approx(1.0) and len(histogram) == 10
    assert np.abs(histogram - 0.1).max() < 0.03
    narrow = metrics.rank_histogram(0.2 * calibrated, truth)
    assert narrow[0] > 0.3 and narrow[-1] > 0.3
    rounded = np.round(calibrated), np.round(truth)  # many ties
    np.testing.assert_allclose(metrics.rank_histogram(*rounded), _rank_by_definition(*rounded), atol=1e-12)


def test_detail_ssim_and_diversity_ratio_separate_what_plain_scores_do_not():
    from climgen.testing import rough_field

    truth = rough_field((64, 64), seed=1, smoothness=2.5)
    reference = truth + 0.3 * rough_field((64, 64), seed=2, smoothness=4.0)  # a smooth stand-in for bicubic
    assert metrics.detail_ssim(truth, truth, reference) == pytest.approx(1.0)
    assert metrics.detail_ssim(reference, truth, reference) < 0.1 < metrics.ssim(reference, truth)
    rng = np.random.default_rng(0)
    members = truth + rng.normal(size=(8, 64, 64))  # the truth and the members: draws around one mean
    assert metrics.diversity_ratio(members, truth + rng.normal(size=(64, 64))) == pytest.approx(1.0, abs=0.05)
    assert metrics.diversity_ratio(np.repeat(members[:1], 8, axis=0), truth) == 0.0  # copies: mode collapse


def test_weighted_bicubic_reference_averages_the_valid_cells_of_each_block():
    """A block with one missing cell keeps the (area-weighted) mean of the others, with or
    without weights: missing cells must not make the whole block missing."""
    from climgen.evaluation import bicubic_reference

    truth = rough_field((16, 16), seed=5)
    truth[0, 0] = np.nan
    rows, cols = np.linspace(0.5, 1.5, 16), np.ones(16)
    plain = bicubic_reference(truth, 4)
    weighted = bicubic_reference(truth, 4, weights=(rows, cols))
    assert np.isfinite(plain).all() and np.isfinite(weighted).all()
    equal_weights = bicubic_reference(truth, 4, weights=(np.ones(16), np.ones(16)))
    np.testing.assert_allclose(equal_weights, plain, atol=1e-12)


def test_detail_ssim_ignores_cells_without_data():
    """A prediction with anything where the truth has no data scores as one that matched."""
    truth = rough_field((32, 32), seed=6)
    reference = np.zeros_like(truth)
    gap = truth.copy()
    gap[:8, :8] = np.nan
    wild = truth.copy()
    wild[:8, :8] = 1e6  # where the truth has no data
    score = metrics.detail_ssim(wild, gap, reference)
    assert np.isfinite(score) and score == pytest.approx(metrics.detail_ssim(truth, gap, reference))


def test_ssim_of_a_masked_field_is_the_ssim_of_its_data():
    """A land mask neither raises nor lowers an ocean field's SSIM: with the west half missing
    it is the SSIM of the east half alone (windows touching a missing cell are left out, not
    filled), and it equals pytorch-msssim's where nothing is missing."""
    import torch
    from pytorch_msssim import ssim as ssim_torch

    truth = rough_field((48, 64), seed=7, smoothness=2.0)
    prediction = truth + np.random.default_rng(7).normal(scale=0.5 * truth.std(), size=truth.shape)
    east = (slice(None), slice(32, None))
    expected = float(
        ssim_torch(
            torch.as_tensor(prediction[east])[None, None],
            torch.as_tensor(truth[east])[None, None],
            data_range=float(np.ptp(truth[east])),
            win_size=7,
        )
    )
    assert metrics.ssim(prediction[east], truth[east]) == pytest.approx(expected, abs=1e-7)
    masked = truth.copy()
    masked[:, :32] = np.nan
    assert metrics.ssim(prediction, masked) == pytest.approx(expected, abs=1e-7)  # filled with the mean: 0.37
    reference = np.zeros_like(truth)
    assert metrics.detail_ssim(prediction, masked, reference) == pytest.approx(
        metrics.detail_ssim(prediction[east], truth[east], reference[east]), abs=1e-7
    )
    assert metrics.ms_ssim(np.pad(prediction, 60), np.pad(masked, 60)) is None  # its coarser scales would mix NaN in
    speckled = truth.copy()
    speckled[::4, ::4] = np.nan  # no whole window of data anywhere
    assert np.isnan(metrics.ssim(prediction, speckled))


def test_ensemble_scores_use_only_the_cells_where_the_truth_has_data():
    rng = np.random.default_rng(0)
    truth = rng.normal(size=(32, 32))
    members = truth[None] + rng.normal(size=(8, 32, 32))
    missing = truth.copy()
    missing[:16] = np.nan
    wild = members.copy()
    wild[:, :16] *= 10  # where the truth is missing: must not count
    assert metrics.spread_skill(wild, missing) == metrics.spread_skill(members, missing)
    assert metrics.diversity_ratio(wild, missing) == pytest.approx(metrics.diversity_ratio(members, missing))
    with pytest.raises(ValueError, match="members must be shaped"):
        metrics.crps(members[0], truth)  # one field is not an ensemble: members[None]
    nothing = np.full_like(truth, np.nan)
    assert np.isnan(metrics.ssim(nothing, truth)) and np.isnan(metrics.psnr(nothing, truth))


def test_evaluate_matches_steps_by_their_labels():
    ds = make_dataset("latlon", shape=(16, 16), times=2)
    assert evaluate(ds, ds.isel(time=[1, 0]), variables=["tas"])[0]["rmse"] == 0.0  # reordered, not shifted
    with pytest.raises(InputError, match="'time' differ"):
        evaluate(ds, ds.isel(time=[0, 0]), variables=["tas"])
    # one step selected (its time kept as a scalar coordinate) against the series: that step
    shifted = ds.assign(tas=ds["tas"] + xr.DataArray([0.0, 1.0], dims="time"))
    assert evaluate(shifted, ds.isel(time=1), variables=["tas"])[0]["rmse"] == pytest.approx(1.0)
    assert evaluate(shifted.isel(time=0), ds, variables=["tas"])[0]["rmse"] == 0.0
    with pytest.raises(InputError, match="of one file is not among the other's 'time' steps"):
        evaluate(ds.isel(time=[0]), ds.isel(time=1), variables=["tas"])


def test_evaluate_says_what_it_scored_and_refuses_what_it_cannot_compare():
    """A prediction with gaps is scored where it has values, and says on how many of the
    truth's cells; one with none, one in other units, or one of another region is refused;
    scores that are not finite are null in the JSON."""
    from climgen.errors import ClimgenWarning
    from climgen.evaluation import scores_json

    truth = make_dataset("latlon", shape=(16, 16), times=1)
    half = truth.copy(deep=True)
    half["tas"][..., :8] = np.nan
    with pytest.warns(ClimgenWarning, match=r"values on 50.0% of the truth's cells with data"):
        rows = evaluate(truth, half, variables=["tas"])
    assert rows[0]["scored_share"] == 0.5 and rows[0]["rmse"] == 0.0
    with pytest.raises(InputError, match="no values where the truth has data"):
        evaluate(truth, truth.map(lambda values: values * np.nan, keep_attrs=True), variables=["tas"])
    celsius = truth.assign(tas=(truth["tas"] - 273.15).assign_attrs(truth["tas"].attrs | {"units": "degC"}))
    with pytest.raises(InputError, match="the truth is in 'K' and the prediction in 'degC'"):
        evaluate(truth, celsius, variables=["tas"])
    kelvin = truth.assign(tas=truth["tas"].assign_attrs(truth["tas"].attrs | {"units": "kelvin"}))
    assert evaluate(truth, kelvin, variables=["tas"])[0]["rmse"] == 0.0  # the same units, spelt otherwise
    elsewhere = truth.isel(lat=slice(4, 12)).assign_coords(lat=truth["lat"][4:12] + 15.0)
    with pytest.raises(InputError, match="another region, or a coarser grid"):
        evaluate(truth, elsewhere, variables=["tas"])
    perfect = json.loads(scores_json(evaluate(truth, truth, variables=["tas"])))
    assert perfect[0]["psnr"] is None and perfect[0]["rmse"] == 0.0


def test_metrics_take_data_arrays_and_ensembles_are_checked_member_by_member():
    from climgen.grid import coarsen_dataset
    from climgen.testing import assert_coarse_consistent

    truth = make_dataset("latlon", shape=(32, 32), times=2)
    coarse = coarsen_dataset(truth, 4)
    members = coarse.climgen.synthesize(factor=4, members=3, seed=2)
    assert metrics.crps(members["tas"], truth["tas"]) == metrics.crps(members["tas"].values, truth["tas"].values)
    assert metrics.rmse(members["tas"][0], truth["tas"]) == metrics.rmse(members["tas"].values[0], truth["tas"].values)
    assert_coarse_consistent(members["tas"], coarse["tas"], 4)
    shifted = members["tas"].copy()
    shifted[1, 0, 0, 0] += 5.0
    with pytest.raises(AssertionError):
        assert_coarse_consistent(shifted, coarse["tas"], 4)
    # in the field's own units: a precipitation flux of 1e-6 doubled is caught too
    flux = members["tas"] * 1e-8
    assert_coarse_consistent(flux, coarse["tas"] * 1e-8, 4)
    with pytest.raises(AssertionError):
        assert_coarse_consistent(2 * flux, coarse["tas"] * 1e-8, 4)


def test_evaluating_members_says_the_scores_are_of_their_mean_and_gridless_variables_are_refused():
    from climgen.evaluation import format_table
    from climgen.grid import coarsen_dataset

    truth = make_dataset("latlon", shape=(32, 32), times=1)
    members = coarsen_dataset(truth, 4).climgen.synthesize(factor=4, members=3)
    rows = evaluate(truth, members, variables=["tas"])
    assert rows[0]["members"] == 3 and "prediction (mean of 3 members)" in format_table(rows)
    with pytest.raises(InputError, match="does not span the spatial dimensions"):
        step = xr.DataArray(np.arange(1.0), dims="time")
        evaluate(truth.assign(step=step), members.assign(step=step), variables=["step"])


def test_maps_of_fields_they_cannot_draw_say_what_to_pass(tmp_path):
    pytest.importorskip("cartopy")
    from climgen.plotting import plot_refinement

    fine = make_dataset("latlon", shape=(8, 8), times=2).climgen.synthesize(factor=2)
    with pytest.raises(InputError, match=r"select one first, e.g. .isel\(time=0\)"):
        plot_refinement(fine["tas"], fine["tas"], fine["refinement_depth"], tmp_path / "map.png")
    rotated = make_dataset("rotated", shape=(8, 8))
    with pytest.raises(InputError, match="needs true latitude and longitude"):
        plot_refinement(rotated["tas"], rotated["tas"], rotated["tas"], tmp_path / "map.png")


def test_plots_leave_the_process_s_backend_and_figures_alone_and_make_their_folders(tmp_path):
    pytest.importorskip("cartopy")
    import matplotlib
    import matplotlib.pyplot as plt

    from climgen.plotting import plot_evaluation, plot_refinement

    backend = matplotlib.get_backend()
    truth = make_dataset("latlon", shape=(16, 16), times=1)
    coarse = truth.coarsen(lat=2, lon=2).mean()
    fine = coarse.climgen.synthesize(factor=2)
    plot_refinement(coarse["tas"].isel(time=0), fine["tas"].isel(time=0), fine["refinement_depth"], tmp_path / "new" / "map.png")
    written = plot_evaluation(truth, fine, "tas", tmp_path / "scores", factor=2)  # names as a string, as synthesize takes them
    assert written == [tmp_path / "scores" / "evaluation_tas.png"] and (tmp_path / "new" / "map.png").exists()
    assert plot_evaluation(truth["tas"], fine["tas"], ["tas"], tmp_path / "arrays")  # DataArrays as datasets of themselves
    assert matplotlib.get_backend() == backend and plt.get_fignums() == []
    with pytest.raises(InputError, match=r"variables \['pr'\] are not in both"):
        plot_evaluation(truth, fine, ["pr"], tmp_path / "scores")


def test_a_truth_on_other_longitudes_is_compared_on_the_predictions():
    """A global truth stored on 0..360 against a prediction on -180..180 (or the other way
    round): the same cells, compared column by column."""
    lon = 11.25 + 22.5 * np.arange(16)
    truth = xr.Dataset(
        {"tas": (("lat", "lon"), rough_field((8, 16), seed=3) + 280.0, {"units": "K"})},
        coords={
            "lat": ("lat", -78.75 + 22.5 * np.arange(8), {"units": "degrees_north"}),
            "lon": ("lon", lon, {"units": "degrees_east"}),
        },
    )
    other = truth.assign_coords(lon=(truth["lon"] + 180) % 360 - 180).sortby("lon")
    assert evaluate(truth, other, variables=["tas"])[0]["rmse"] == 0.0
    assert evaluate(other, truth, variables=["tas"])[0]["rmse"] == 0.0


def test_a_truth_over_a_larger_region_or_stored_north_to_south_is_compared_on_the_predictions_cells():
    """The truth's cells are taken where the prediction's centres lie, in the prediction's
    order: the scores are those of the truth cut to the prediction's region."""
    truth = make_dataset("latlon", shape=(32, 32))
    region = truth.isel(lat=slice(8, 24), lon=slice(4, 20))
    refined = coarsen_dataset(region, 4).climgen.synthesize(factor=4)
    expected = evaluate(region, refined, factor=4)
    for whole in (truth, truth.isel(lat=slice(None, None, -1)), truth.isel(lon=slice(None, None, -1))):
        rows = evaluate(whole, refined, factor=4)
        assert [row["rmse"] for row in rows] == [row["rmse"] for row in expected]
    flipped = refined.isel(lat=slice(None, None, -1))
    assert evaluate(region, flipped, factor=4)[0]["rmse"] == pytest.approx(expected[0]["rmse"])
    with pytest.raises(InputError, match="the truth has no values"):
        evaluate(truth.map(lambda values: values * np.nan, keep_attrs=True), refined)


def test_small_fields_have_no_spectrum_and_unknown_grid_kinds_are_named():
    from climgen.grid import cell_weights

    with pytest.raises(ValueError, match="at least 4 x 4 cells; the field has 3 x 8"):
        metrics.power_spectrum(np.ones((3, 8)))
    assert metrics.spectral_error_per_octave(np.ones((2, 8)), np.ones((2, 8))) == {}
    with pytest.raises(ValueError, match="unknown grid kind 'gaussian'"):
        make_dataset("gaussian")
    with pytest.raises(ValueError, match="unknown grid kind 'gaussian'"):
        cell_weights(np.zeros((2, 2)), np.zeros((2, 2)), "gaussian")


def test_integer_fields_are_scored_without_wrapping_and_other_shapes_are_refused():
    big = np.array([[30000, -30000], [100, 200]], dtype=np.int16)  # an int16 DEM's range
    assert metrics.rmse(big, -big) == pytest.approx(np.sqrt((60000**2 + 60000**2 + 200**2 + 400**2) / 4))
    assert metrics.mae(np.array([[200, 10]], dtype=np.uint8), np.array([[10, 200]], dtype=np.uint8)) == 190
    with pytest.raises(ValueError, match=r"shape \(2, 3\) and \(3, 2\) cannot be compared"):
        metrics.rmse(np.zeros((2, 3)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="not 2 x 2 coarse cells refined x4"):
        metrics.coarse_consistency_error(np.zeros((4, 4)), np.zeros((2, 2)), 4)


def test_the_documented_modules_are_reached_from_import_climgen_alone():
    code = "import climgen; climgen.testing.make_dataset; climgen.metrics.rmse; climgen.grid.area_weights"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr

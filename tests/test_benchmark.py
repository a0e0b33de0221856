"""climgen benchmark: rows, files and honesty notes, on the held-out real terrain fixture."""

from __future__ import annotations

import json

import numpy as np
import pytest

from climgen.benchmark import BenchmarkOptions, run_benchmark

REQUIRED = {
    "method",
    "rmse",
    "ssim",
    "ms_ssim",
    "detail_ssim",
    "frechet_distance",
    "spectral_error",
    "diversity",
    "diversity_ratio",
    "crps",
    "flops_per_pixel",
    "mpix_per_s",
}


def test_pretrained_benchmark_at_x2_compares_amsgm_with_bicubic(hsurf_truth, tmp_path):
    options = BenchmarkOptions(factor=2, members=2, pretrained=True, ablations=True)
    rows = run_benchmark(hsurf_truth, "HSURF", tmp_path, options, log=lambda m: None)
    assert [(row["method"], row["variant"]) for row in rows] == [
        ("bicubic", ""),
        ("amsgm", "best estimate"),
        ("amsgm", "best estimate, uniform depth"),
        ("amsgm", "2 samples"),
        ("amsgm", "3x3 blocks only"),
        ("amsgm", "stage 2, feedback controller"),
        ("amsgm", "stage 2, fixed weights"),
    ]
    assert all(REQUIRED <= set(row) for row in rows)
    bicubic, best, uniform, samples = rows[:4]
    assert bicubic["diversity"] == best["diversity"] == 0 < samples["diversity"]
    assert 0 < samples["diversity_ratio"] < 2 and bicubic["diversity_ratio"] == 0
    assert bicubic["detail_ssim"] < best["detail_ssim"]  # bicubic adds no detail
    assert best["flops_per_pixel"] <= uniform["flops_per_pixel"]
    written = json.loads((tmp_path / "benchmark.json").read_text())
    assert written["rows"] == json.loads(json.dumps(rows)) and "gan and vae" in " ".join(written["not_run"])
    assert "| amsgm | best estimate |" in (tmp_path / "benchmark.md").read_text()
    assert (tmp_path / "spectra.png").stat().st_size > 10_000


def test_benchmark_command_fine_tunes_then_compares(hsurf_truth, tmp_path, climgen_cli):
    truth = tmp_path / "truth.nc"
    hsurf_truth.to_netcdf(truth)
    command = ["benchmark", "--truth", str(truth), "--out", str(tmp_path / "out")]
    result = climgen_cli(*command, "--factor", "2", "--members", "2", "--quick")
    assert result.returncode == 0, result.stderr
    assert "fine-tuning amsgm on the western half: 60 steps" in result.stderr
    assert "| bicubic |" in result.stdout and "| amsgm | best estimate, uniform depth |" in result.stdout


def test_benchmark_refuses_a_truth_too_small_to_split(tmp_path):
    from climgen.errors import InputError
    from climgen.testing import make_dataset

    with pytest.raises(InputError, match="too small"):
        run_benchmark(make_dataset("latlon", shape=(24, 40)), "tas", tmp_path, BenchmarkOptions(pretrained=True))
    # either half too narrow once trimmed to 16 cells, or too few patches for the Frechet distance:
    # said before any folder is made or any model runs
    with pytest.raises(InputError, match="each half needs at least 32 x 32 cells"):
        run_benchmark(make_dataset("latlon", shape=(64, 63)), "tas", tmp_path / "odd", BenchmarkOptions(pretrained=True))
    with pytest.raises(InputError, match="gives 9 patches of 16 x 16 cells for the Frechet distance, which needs 20"):
        run_benchmark(make_dataset("latlon", shape=(47, 94)), "tas", tmp_path / "small", BenchmarkOptions(pretrained=True))
    masked = make_dataset("latlon", shape=(64, 128))
    masked["tas"][..., :8, :8] = np.nan
    with pytest.raises(InputError, match="baselines fine-tune only on fields without missing cells"):
        run_benchmark(masked, "tas", tmp_path / "masked", BenchmarkOptions())
    empty = make_dataset("latlon", shape=(64, 128))
    empty["tas"][:] = np.nan
    with pytest.raises(InputError, match="has no values in its eastern half"):
        run_benchmark(empty, "tas", tmp_path / "empty", BenchmarkOptions(pretrained=True))
    infinite = make_dataset("latlon", shape=(64, 128))
    infinite["tas"][..., 5, 100] = np.inf
    with pytest.raises(InputError, match="holds infinite values"):
        run_benchmark(infinite, "tas", tmp_path / "infinite", BenchmarkOptions(pretrained=True))
    assert sorted(path.name for path in tmp_path.iterdir()) == []


def test_a_constant_truth_has_no_top_octave_to_score():
    from climgen.benchmark import score

    truth = np.full((1, 48, 48), 5.0)
    row = score("bicubic", truth[None], truth, truth, 1.0, 0.0)
    assert row["spectral_error"] is None and row["rmse"] == 0.0


def test_benchmark_command_takes_the_only_field_beside_its_bounds(tmp_path, climgen_cli):
    from climgen.testing import make_dataset

    truth = make_dataset("latlon", shape=(24, 40))
    truth["lat_bnds"] = (("lat", "nv"), np.stack([truth["lat"].values - 0.5, truth["lat"].values + 0.5], axis=1))
    truth["lat"].attrs["bounds"] = "lat_bnds"
    truth.to_netcdf(tmp_path / "truth.nc")
    command = [
        "benchmark",
        "--truth",
        str(tmp_path / "truth.nc"),
        "--out",
        str(tmp_path / "out"),
    ]
    result = climgen_cli(*command, "--pretrained")
    # past choosing the variable (tas, not lat_bnds), to the domain's own limit
    assert result.returncode == 2 and "too small" in result.stderr and "--variable" not in result.stderr

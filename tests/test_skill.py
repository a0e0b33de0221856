"""The self-test that decides how much of the model's learned detail each variable keeps."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import xarray as xr
import yaml

from climgen import pipeline, streaming
from climgen.depth.skill import ResidualGain, choose_gain, detail_kept, self_test
from climgen.errors import ConfigError
from climgen.models.checkpoint import load_checkpoint
from climgen.models.generator import AdaptiveMultiScaleGenerator, GeneratorConfig, bicubic_upsample, project_to_coarse
from climgen.refine import TileRefiner
from climgen.tiling import TileLayout


def test_the_gain_minimises_the_quadratic_and_is_kept_only_when_it_pays():
    # error e and detail d over three cells: the best gain is -<e, d> / <d, d>
    error, detail = np.array([1.0, -2.0, 0.5]), np.array([-1.0, 2.0, 1.0])
    chosen = choose_gain(error @ error, error @ detail, detail @ detail)
    best = -(error @ detail) / (detail @ detail)
    assert 0 < best < 1 and chosen.gain == round(best, 2)
    rmse = lambda g: np.sqrt(np.sum((error + g * detail) ** 2))  # noqa: E731
    assert chosen.error_ratio == pytest.approx(rmse(chosen.gain) / rmse(1.0), abs=1e-4)
    assert all(rmse(chosen.gain) <= rmse(g) + 1e-9 for g in np.linspace(0, 1, 101))
    # detail that only hurts is dropped; detail that helps more when amplified is kept as trained
    assert choose_gain(1.0, 0.5, 1.0).gain == 0.0
    assert choose_gain(4.0, -3.0, 1.0) == ResidualGain(optimum=3.0)
    # a gain that would cut the error by less than the minimum is not worth a change
    assert choose_gain(100.0, -0.9, 1.0).gain == 1.0
    assert choose_gain(100.0, -0.9, 1.0, min_improvement=0.0).gain == 0.9
    assert choose_gain(1.0, 0.0, 0.0).note == "the model adds no detail here"


def test_the_generator_scales_its_detail_and_stays_coarse_consistent():
    model = load_checkpoint("amsgm-multibranch").module
    generator = torch.Generator().manual_seed(3)
    coarse = torch.randn(2, 1, 12, 12, generator=generator).cumsum(-1).cumsum(-2)
    noise = [torch.randn(2, 1, 24, 24, generator=generator)]
    with torch.inference_mode():
        full, half, none, same = (model(coarse, stages=1, noise=noise, residual_gain=g)[0] for g in (1.0, 0.5, 0.0, 1.0))
        default = model(coarse, stages=1, noise=noise)[0]
    base = project_to_coarse(bicubic_upsample(coarse, 2), coarse)
    assert torch.equal(default, full) and torch.equal(same, full)
    torch.testing.assert_close(none, base, rtol=0, atol=1e-5)
    torch.testing.assert_close(half, base + 0.5 * (full - base), rtol=0, atol=1e-5)
    assert (full - base).abs().max() > 1e-2  # there is detail to scale
    for refined in (full, half, none):
        torch.testing.assert_close(torch.nn.functional.avg_pool2d(refined, 2), coarse, rtol=0, atol=1e-4)


def _refiner(model) -> TileRefiner:
    return TileRefiner(model, 4, TileLayout((8, 8), 8, 0, 1))


def test_detail_learned_on_terrain_is_kept_there_and_random_detail_is_dropped(hsurf_coarse):
    fields = [hsurf_coarse["HSURF"].values[0]]
    trained = self_test(_refiner(load_checkpoint("amsgm-multibranch").module), fields, seed_key=(0, "HSURF"))
    assert trained.gain == 1.0 and trained.error_ratio == 1.0 and trained.fields == 1
    assert trained.cells == (fields[0].shape[0] // 2 * 2) * (fields[0].shape[1] // 2 * 2)
    assert trained.optimum > 0.9  # the terrain's own coarser copy confirms the learned detail

    torch.manual_seed(0)
    untrained = AdaptiveMultiScaleGenerator(GeneratorConfig(channels=8, blocks=1)).eval()
    torch.nn.init.normal_(untrained.tail.weight, std=0.3)  # a model that adds detail at random
    random = self_test(_refiner(untrained), fields, seed_key=(0, "HSURF"))
    assert random.gain < 0.2 and random.error_ratio < 0.9
    assert self_test(_refiner(untrained), fields, seed_key=(0, "HSURF")) == random  # seeded
    assert detail_kept({"HSURF": random, "tas": trained}) == [
        f"HSURF: {random.gain:g} of the model's learned detail "
        f"(self-test error {100 * (1 - random.error_ratio):.1f}% lower than with all of it)"
    ]


def test_gaps_small_domains_and_covariates(hsurf_coarse, hsurf_truth):
    refiner = _refiner(load_checkpoint("amsgm-multibranch").module)
    field = hsurf_coarse["HSURF"].values[0].copy()
    field[:10, :20] = np.nan  # missing cells are filled for the model and left out of the test
    gapped = self_test(refiner, [field], seed_key=(1,))
    assert np.isfinite(gapped.error_ratio) and 0 < gapped.cells < field.size
    small = self_test(refiner, [field[20:27, 20:40]], seed_key=(1,))
    assert small.gain == 1.0 and small.cells == 0 and "too small" in small.note
    covariate = hsurf_truth["HSURF"].values[:, : field.shape[0] * 4, : field.shape[1] * 4]
    with_covariate = self_test(refiner, [field], covariate, seed_key=(1,))
    assert with_covariate.cells == gapped.cells and with_covariate.optimum != gapped.optimum


def test_gains_reach_memory_streaming_cli_and_recipes_with_the_same_bits(hsurf_coarse, tmp_path, climgen_cli):
    coarse = hsurf_coarse.isel(rlat=slice(0, 16), rlon=slice(0, 24))
    auto = pipeline.synthesize(coarse, seed=2, tile_size=8)
    assert json.loads(auto.attrs["climgen_provenance"])["residual_gains"]["HSURF"]["gain"] == 1.0
    np.testing.assert_array_equal(
        auto["HSURF"].values, pipeline.synthesize(coarse, seed=2, tile_size=8, residual_gain=1)["HSURF"].values
    )
    damped = pipeline.synthesize(coarse, seed=2, tile_size=8, residual_gain=0.5)
    plain = pipeline.synthesize(coarse, seed=2, tile_size=8, residual_gain=0)
    # halving the detail of every stage lands between the plain and the full refinement
    middle = 0.5 * (plain["HSURF"].values + auto["HSURF"].values)
    assert 0 < np.abs(damped["HSURF"].values - middle).mean() < 0.2 * np.abs(auto["HSURF"].values - plain["HSURF"].values).mean()
    # without detail the network is skipped, and the compute report says so
    assert json.loads(plain.attrs["climgen_provenance"])["compute"]["macs"] == 0
    assert json.loads(auto.attrs["climgen_provenance"])["compute"]["macs"] > 0
    provenance = json.loads(damped.attrs["climgen_provenance"])
    assert provenance["residual_gain"] == 0.5 and provenance["residual_gains"]["HSURF"]["note"] == "given"

    source = tmp_path / "coarse.nc"
    coarse.to_netcdf(source)
    config = pipeline.make_config(seed=2, tile_size=8, residual_gain=0.5)
    with xr.open_dataset(source) as ds:
        job = streaming.run(ds, tmp_path / "out.zarr", config, options=streaming.StreamOptions(region_tiles=1, progress=False))
    assert "detail      HSURF: 0.5 of the model's learned detail (given)" in job.describe()
    with xr.open_zarr(tmp_path / "out.zarr") as got:
        np.testing.assert_array_equal(got["HSURF"].values, damped["HSURF"].values)
    result = climgen_cli("synthesize", source, tmp_path / "cli.nc", "--seed", 2, "--residual-gain", "0.5", "--quiet")
    assert result.returncode == 0, result.stderr
    assert "HSURF: 0.5 of the model's learned detail (given);" in result.stdout
    refused = climgen_cli("synthesize", source, tmp_path / "bad.nc", "--residual-gain", "some", "--quiet")
    assert refused.returncode == 2 and "--residual-gain takes 'auto' or a number" in refused.stderr
    recipe = tmp_path / "job.yaml"
    recipe.write_text(yaml.safe_dump({"input": "coarse.nc", "output": "recipe.zarr", "residual_gain": 3}))
    refused = climgen_cli("run", recipe, "--quiet")
    assert refused.returncode == 2 and "residual_gain" in refused.stderr
    # the ensemble model's detail is a sample: damping it by an RMSE test would take its spread away
    sampled = pipeline.synthesize(coarse, seed=2, tile_size=8, model="amsgm-stage2")
    gains = json.loads(sampled.attrs["climgen_provenance"])["residual_gains"]["HSURF"]
    assert gains["gain"] == 1.0 and gains["note"].startswith("not tested: the model draws detail as samples")
    with pytest.raises(ConfigError, match="residual_gain must be 'auto' or a number in 0..2"):
        pipeline.make_config(residual_gain="half")
    with pytest.raises(ConfigError, match="applies to the multi-scale generator"):
        pipeline.synthesize(coarse, model="srgan-x4", residual_gain=0.5)


@pytest.mark.parametrize(
    ("stages", "adversarial", "samples"),
    [
        (["pretrain"], {}, False),
        (["adversarial"], {"adversarial_weight": 0.01, "feature_matching_weight": 0.1, "ensemble_weight": 0.0}, True),
        (["adversarial"], {"adversarial_weight": 0.0, "feature_matching_weight": 0.0, "ensemble_weight": 8.0}, True),
        (["adversarial"], {"adversarial_weight": 0.0, "feature_matching_weight": 0.0, "ensemble_weight": 0.0}, False),
    ],
    ids=["content-losses", "adversarial", "ensemble-loss", "spectral-loss-only"],
)
def test_only_models_trained_to_sample_skip_the_self_test(stages, adversarial, samples, hsurf_coarse, tmp_path):
    from climgen.models.checkpoint import save_checkpoint

    default = load_checkpoint("amsgm-multibranch")
    metadata = {"stages": stages, "recipe": {"adversarial": adversarial | {"spectral_weight": 0.02}}}
    path = save_checkpoint(default.module, tmp_path / "model", "amsgm", metadata)
    assert load_checkpoint(path).draws_samples is samples
    result = pipeline.synthesize(hsurf_coarse, factor=2, tile_size=8, model=str(path))
    gain = json.loads(result.attrs["climgen_provenance"])["residual_gains"]["HSURF"]
    assert str(gain["note"]).startswith("not tested") is samples
    assert (gain["cells"] > 0) is not samples  # the self-test ran on the coarse cells, or not at all

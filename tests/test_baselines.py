"""The single-scale GAN and conditional VAE baselines: shapes, consistency, seeds,
checkpoints, the pipeline's handling of them, and a tiny training run of each."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from climgen.errors import ConfigError
from climgen.models.baselines import BaselineConfig, ConditionalVAE, SingleScaleGenerator
from climgen.models.checkpoint import load_checkpoint, save_checkpoint
from climgen.models.generator import coarsen
from climgen.testing import make_dataset
from tests.test_training import _recipe

KINDS = {"srgan": SingleScaleGenerator, "cvae": ConditionalVAE}


def _perturbed(model):
    """Non-zero output weights (a fresh model outputs bicubic exactly)."""
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=torch.Generator().manual_seed(parameter.numel())))
    return model.eval()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("factor", [2, 4, 8])
def test_shapes_consistency_and_seeds(kind, factor):
    model = _perturbed(KINDS[kind](BaselineConfig(factor=factor, channels=8, blocks=1)))
    coarse = 280 + 5 * torch.randn(2, 1, 12, 10, generator=torch.Generator().manual_seed(1))
    covariates = torch.randn(2, 1, 12 * factor, 10 * factor)
    with torch.no_grad():
        first = model(coarse, covariates, generator=torch.Generator().manual_seed(7))
        again = model(coarse, covariates, generator=torch.Generator().manual_seed(7))
        other = model(coarse, covariates, generator=torch.Generator().manual_seed(8))
    assert len(first) == 1 and first[0].shape == (2, 1, 12 * factor, 10 * factor)
    torch.testing.assert_close(coarsen(first[0], factor), coarse, atol=1e-3, rtol=0)
    assert torch.equal(first[0], again[0]) and not torch.equal(first[0], other[0])
    with pytest.raises(ValueError, match="exactly"):
        model(coarse, stages=factor.bit_length())


def test_latent_from_stage_noise_has_unit_variance():
    model = SingleScaleGenerator(BaselineConfig(factor=4, channels=8, blocks=1))
    coarse = torch.zeros(1, 1, 64, 64)
    noise = [torch.randn(1, 1, 128, 128), torch.randn(1, 1, 256, 256)]
    latent = model.latent_from(coarse, noise, None)
    assert latent.shape == (1, 2, 64, 64)
    assert 0.9 < float(latent.std()) < 1.1


def test_vae_encoder_moments_have_the_latent_shape():
    model = ConditionalVAE(BaselineConfig(factor=4, channels=8, blocks=1))
    fine = torch.randn(3, 1, 32, 32)
    mu, log_variance = model.encode(fine, coarsen(fine, 4))
    assert mu.shape == log_variance.shape == (3, 2, 8, 8)


@pytest.mark.parametrize("kind", KINDS)
def test_checkpoint_round_trip_and_pipeline(kind, tmp_path, monkeypatch):
    model = _perturbed(KINDS[kind](BaselineConfig(factor=2, channels=8, blocks=1)))
    path = save_checkpoint(model, tmp_path / kind, kind, {"name": f"tiny-{kind}"})
    loaded = load_checkpoint(path)
    assert loaded.architecture == kind and isinstance(loaded.module, KINDS[kind])
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, loaded.module.state_dict()[name])
    ds = make_dataset("latlon", shape=(16, 16))
    out = ds.climgen.synthesize(factor=2, model=str(path), seed=3)
    again = ds.climgen.synthesize(factor=2, model=str(path), seed=3)
    np.testing.assert_array_equal(out["tas"].values, again["tas"].values)
    # one's own checkpoint is named by its absolute path, whatever folder it was given from
    monkeypatch.chdir(tmp_path)
    relative = ds.climgen.synthesize(factor=2, model=Path(path).name, seed=3)
    assert json.loads(relative.attrs["climgen_provenance"])["model_argument"] == str(Path(path).resolve())
    assert set(np.unique(out["refinement_depth"].values)) <= {0, 1}  # every tile fully (constant ones: 0)
    block_means = out["tas"].coarsen(lat=2, lon=2).mean().values
    np.testing.assert_allclose(block_means, ds["tas"].values, atol=1e-3)
    with pytest.raises(ConfigError, match="x2 only"):
        ds.climgen.synthesize(factor=4, model=str(path))
    with pytest.raises(ConfigError, match="budget, quality"):
        ds.climgen.synthesize(factor=2, model=str(path), budget=0.5)


@pytest.mark.parametrize("kind", KINDS)
def test_tiny_baseline_training_run(kind, tmp_path):
    from climgen.training.baselines import train_baseline

    baseline = {"kind": kind, "factor": 2, "channels": 8, "blocks": 1, "steps": 3, "batch_size": 2, "validate_every": 3}
    recipe = _recipe(tmp_path, baseline=baseline)
    recipe.data.validation_fields.append(recipe.data.real_fields[0])
    path = train_baseline(recipe, log=lambda message: None)
    checkpoint = load_checkpoint(path)
    assert checkpoint.architecture == kind and checkpoint.metadata["stages"] == [kind]
    assert checkpoint.metadata["validation"][-1]["step"] == 3 and "ssim" in checkpoint.metadata["validation"][-1]


@pytest.mark.parametrize("name, kind", [("srgan-x4", "srgan"), ("cvae-x4", "cvae")])
def test_shipped_baselines_load_and_refine_by_4(name, kind):
    checkpoint = load_checkpoint(name)
    assert checkpoint.architecture == kind and checkpoint.module.config.factor == 4
    assert checkpoint.metadata["trained_on_device"] and checkpoint.metadata["validation"][-1]["step"] == 3500
    ds = make_dataset("latlon", shape=(16, 16))
    out = ds.climgen.synthesize(factor=4, model=name, members=2, seed=1)
    assert out["tas"].shape == (2, 64, 64) and np.isfinite(out["tas"]).all()


def test_steps_on_the_command_line_are_a_baseline_s_own(tmp_path, climgen_cli):
    """`climgen train --steps N` set the pre-training's steps, which a baseline does not use:
    a baseline recipe of 3,500 steps ran all of them."""
    import yaml

    from tests.test_training import _recipe_document

    baseline = {"kind": "cvae", "factor": 2, "channels": 8, "blocks": 1, "steps": 500, "batch_size": 2, "validate_every": 250}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(_recipe_document(tmp_path, baseline=baseline)))
    result = climgen_cli("train", tmp_path / "r.yaml", "--steps", 2, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    metadata = load_checkpoint(str(tmp_path / "tiny-model.safetensors")).metadata
    assert metadata["recipe"]["baseline"]["steps"] == 2 and metadata["validation"][-1]["step"] == 2

"""A tiny end-to-end training run on CPU, through the real recipe and CLI code."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml

from climgen.models.checkpoint import load_checkpoint
from climgen.testing import make_dataset
from climgen.training.recipe import load_recipe

ROOT = Path(__file__).resolve().parents[1]


def test_default_recipe_is_valid():
    recipe = load_recipe(ROOT / "recipes" / "train-default.yaml")
    assert recipe.data.real_fields and recipe.data.validation_fields
    assert recipe.resolve(recipe.output).endswith("climgen/models/weights/amsgm-default")


def test_tiny_training_run_produces_a_loadable_model(tmp_path):
    terrain = make_dataset("rotated", shape=(80, 80), name="orog")
    terrain.to_netcdf(tmp_path / "terrain.nc")
    recipe = {
        "name": "tiny",
        "seed": 1,
        "device": "cpu",
        "output": "tiny-model",
        "model": {"channels": 8, "blocks": 1},
        "data": {
            "crop_size": 48,
            "real_fraction": 0.5,
            "real_fields": [{"path": "terrain.nc", "variable": "orog", "sel": {"rlon": [None, 30.0]}}],
            "validation_fields": [{"path": "terrain.nc", "variable": "orog", "sel": {"rlon": [30.0, None]}}],
        },
        "pretrain": {"steps": 4, "batch_size": 2, "validate_every": 2},
    }
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(recipe))
    result = subprocess.run(
        [sys.executable, "-m", "climgen.cli", "train", str(tmp_path / "tiny.yaml")], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr
    assert "step=4" in result.stdout and "ratio=" in result.stdout
    checkpoint = load_checkpoint(tmp_path / "tiny-model.safetensors")
    assert checkpoint.metadata["trained_on_device"] == "cpu"
    assert [entry["step"] for entry in checkpoint.metadata["validation"]] == [2, 4]
    coarse = make_dataset("latlon", shape=(8, 8))
    out = coarse.climgen.synthesize(factor=2, model=str(tmp_path / "tiny-model.safetensors"))
    assert np.isfinite(out["tas"]).all()


def test_bad_recipe_names_the_field(tmp_path):
    import pytest

    from climgen.errors import ConfigError

    (tmp_path / "bad.yaml").write_text("name: x\noutput: y\npretrain: {steps: 0}\n")
    with pytest.raises(ConfigError, match="pretrain.steps"):
        load_recipe(tmp_path / "bad.yaml")

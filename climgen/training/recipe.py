"""Typed training recipes, read from YAML (``climgen train RECIPE.yaml``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from climgen.yamlconfig import Strict, load_yaml_model


class FieldSource(Strict):
    """A real 2-D field used for training or validation (paths relative to the recipe)."""

    path: str
    variable: str
    covariate_path: str | None = None
    covariate_variable: str | None = None
    sel: dict[str, tuple[float | None, float | None]] | None = None


class ModelSection(Strict):
    """Generator size and structure (channels, blocks, kernels, covariate slots, stages)."""

    channels: int = Field(32, ge=4, le=256)
    blocks: int = Field(3, ge=1, le=16)
    covariate_slots: int = Field(2, ge=0, le=8)
    kernel_sizes: tuple[int, ...] = (3, 5, 7)
    norm_window: int = Field(7, ge=3)
    context_window: int = Field(15, ge=3)
    max_stages: int = Field(4, ge=1, le=6)


class DataSection(Strict):
    """Training data: crop size, share of real fields, the real and validation fields."""

    crop_size: int = Field(64, ge=16)
    real_fraction: float = Field(0.4, ge=0, le=1)
    # share of the generated targets related to their covariate at large scales only (the
    # covariate smoothed first): a covariate that co-varies with a field need not shape its detail
    large_scale_covariate_share: float = Field(0.0, ge=0, le=1)
    real_fields: list[FieldSource] = []
    validation_fields: list[FieldSource] = []


class PretrainSection(Strict):
    """Stage 1: L1 + MS-SSIM content pre-training settings."""

    steps: int = Field(1500, ge=0)
    batch_size: int = Field(16, ge=1)
    learning_rate: float = Field(2e-3, gt=0)
    max_stages: int = Field(2, ge=1, le=4)
    msssim_weight: float = Field(0.2, ge=0)
    validate_every: int = Field(250, ge=1)
    checkpoint_every: int = Field(100, ge=1)


class AdversarialSection(Strict):
    """Stage 2: adversarial + feature-matching + spectral losses with a feedback controller."""

    steps: int = Field(0, ge=0)
    batch_size: int = Field(8, ge=1)
    learning_rate: float = Field(1e-4, gt=0)
    discriminator_learning_rate: float = Field(2e-4, gt=0)
    discriminator_channels: int = Field(32, ge=4)
    max_stages: int = Field(2, ge=1, le=4)
    msssim_weight: float = Field(0.2, ge=0)
    adversarial_weight: float = Field(0.01, ge=0)
    feature_matching_weight: float = Field(0.1, ge=0)
    spectral_weight: float = Field(0.05, ge=0)
    tolerance: float = Field(0.02, ge=0)
    spectral_target: float = Field(0.1, ge=0)
    validate_every: int = Field(100, ge=1)
    feedback: bool = True  # False: fixed loss weights and learning rates (the controller's ablation)
    # > 0: also the fair CRPS of two members drawn with different noise (an ensemble loss that
    # rewards members spreading like the truth's unresolved detail; content losses alone let
    # the noise be ignored)
    ensemble_weight: float = Field(0.0, ge=0)


class BaselineSection(Strict):
    """Train a single-scale baseline instead of the adaptive generator (model, pretrain and
    adversarial sections are then unused; data and validation are shared)."""

    kind: Literal["srgan", "cvae"]
    factor: int = Field(4, ge=2, le=16)
    channels: int = Field(32, ge=4, le=256)
    blocks: int = Field(6, ge=1, le=32)
    steps: int = Field(1000, ge=1)
    batch_size: int = Field(16, ge=1)
    learning_rate: float = Field(1e-3, gt=0)
    msssim_weight: float = Field(0.2, ge=0)
    adversarial_weight: float = Field(0.01, ge=0)
    discriminator_channels: int = Field(32, ge=4)
    kl_weight: float = Field(0.01, ge=0)
    validate_every: int = Field(250, ge=1)


class TrainRecipe(Strict):
    """Everything needed to reproduce a trained generator."""

    name: str
    seed: int = 0
    device: Literal["cpu", "cuda", "auto"] = "auto"
    # bfloat16: the generator's forward passes under bf16 autocast (losses stay float32). Opt-in:
    # it diverged once on an H100 (see climgen.training.pretrain.autocast)
    precision: Literal["float32", "bfloat16"] = "float32"
    threads: int | None = None
    output: str
    init_from: str | None = None  # "default" or a checkpoint: fine-tune instead of training from scratch
    model: ModelSection = ModelSection()
    data: DataSection = DataSection()
    pretrain: PretrainSection = PretrainSection()
    adversarial: AdversarialSection = AdversarialSection()
    baseline: BaselineSection | None = None
    base_dir: Path = Path(".")

    def resolve(self, path: str) -> str:
        """A path from the recipe, relative to the recipe file's folder."""
        candidate = Path(path).expanduser()
        return str(candidate if candidate.is_absolute() else (self.base_dir / candidate).resolve())


def load_recipe(path: str | Path) -> TrainRecipe:
    """Read and validate a training recipe; errors name the offending field."""
    return load_yaml_model(path, TrainRecipe, base_dir=Path(path).resolve().parent)

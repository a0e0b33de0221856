"""Typed training recipes, read from YAML (``climgen train RECIPE.yaml``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from climgen.yamlconfig import Strict, load_yaml_model


class FieldSource(Strict):
    """A real 2-D field used for training or validation (paths relative to the recipe)."""

    path: str
    variable: str
    covariate_path: str | None = None
    covariate_variable: str | None = None
    sel: dict[str, tuple[float | str | None, float | str | None]] | None = None

    @field_validator("sel", mode="before")
    @classmethod
    def _dates_as_text(cls, value):
        """YAML reads an unquoted 2005-01-01 as a date: kept as its ISO text, as quoted."""
        import datetime

        if not isinstance(value, dict):
            return value
        return {
            key: [bound.isoformat() if isinstance(bound, (datetime.date, datetime.datetime)) else bound for bound in bounds]
            if isinstance(bounds, (list, tuple))
            else bounds
            for key, bounds in value.items()
        }

    @model_validator(mode="after")
    def _covariate_named(self):
        if (self.covariate_path is None) != (self.covariate_variable is None):
            raise ValueError("covariate_path and covariate_variable go together: give both or neither")
        return self


class ModelSection(Strict):
    """Generator size and structure (channels, blocks, kernels, covariate slots, stages).

    ``architecture``: ``amsgm`` (multi-branch blocks; noise enters the network) or
    ``hierarchical`` (:class:`climgen.models.hierarchical.HierarchicalGenerator`: residual
    blocks, a mean head for the best estimate and a sample head for ensemble members);
    ``kernel_sizes`` and ``context_window`` belong to the first, ``sampler_channels`` and
    ``roughness_window`` to the second."""

    architecture: Literal["amsgm", "hierarchical"] = "amsgm"
    channels: int = Field(32, ge=4, le=256)
    blocks: int = Field(3, ge=1, le=16)
    covariate_slots: int = Field(2, ge=1, le=8)  # an empty slot costs nothing where no covariate is given
    kernel_sizes: tuple[int, ...] = (3, 5, 7)
    norm_window: int = Field(7, ge=3)
    context_window: int = Field(15, ge=3)
    max_stages: int = Field(4, ge=1, le=6)
    sampler_channels: int = Field(16, ge=1, le=256)
    roughness_window: int = Field(21, ge=3)

    def generator_config(self):
        """The architecture's config dataclass from this section."""
        values = self.model_dump(exclude={"architecture"})
        if self.architecture == "hierarchical":
            from climgen.models.hierarchical import HierarchicalConfig

            dropped = {"kernel_sizes", "context_window"}
            return HierarchicalConfig.from_dict({k: v for k, v in values.items() if k not in dropped})
        from climgen.models.generator import GeneratorConfig

        return GeneratorConfig.from_dict({k: v for k, v in values.items() if k not in {"sampler_channels", "roughness_window"}})


class CorpusSection(Strict):
    """Crops of the real corpus (:mod:`climgen.training.corpus`): the folder holding
    ``corpus/`` and ``ncl/``, the share of training crops drawn from it, the share drawn from
    a field averaged by 2 first, the least share of valid cells in a crop, and weights of
    balancing groups (1 where not given)."""

    root: str
    share: float = Field(0.7, ge=0, le=1)
    coarser_share: float = Field(0.25, ge=0, le=1)
    min_valid: float = Field(0.7, gt=0, le=1)
    group_weights: dict[str, float] = {}


class DataSection(Strict):
    """Training data: crop size, share of real fields, the real and validation fields."""

    crop_size: int = Field(64, ge=16)
    real_fraction: float = Field(0.4, ge=0, le=1)
    # share of the generated targets related to their covariate at large scales only (the
    # covariate smoothed first): a covariate that co-varies with a field need not shape its detail
    large_scale_covariate_share: float = Field(0.0, ge=0, le=1)
    real_fields: list[FieldSource] = []
    validation_fields: list[FieldSource] = []
    corpus: CorpusSection | None = None


class PretrainSection(Strict):
    """Stage 1: L1 + MS-SSIM content pre-training settings."""

    steps: int = Field(1500, ge=0)
    batch_size: int = Field(16, ge=1)
    learning_rate: float = Field(2e-3, gt=0)
    max_stages: int = Field(2, ge=1, le=4)
    msssim_weight: float = Field(0.2, ge=0)
    validate_every: int = Field(250, ge=1)
    checkpoint_every: int = Field(100, ge=1)
    # hierarchical generator only: the mean squared error of the detail (in units of the
    # detail's own spread) beside the absolute error; the fair CRPS of two sampled members
    # (weight), and the share of steps whose stages start from the truth (teacher forcing,
    # where the sample heads learn) instead of the previous stage's output
    detail_mse_weight: float = Field(0.1, ge=0)
    crps_weight: float = Field(1.0, ge=0)
    teacher_forcing: float = Field(0.5, ge=0, le=1)


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
    seed: int = Field(0, ge=0, lt=2**63)
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$")  # cuda:N: GPU N
    # bfloat16: the generator's forward passes under bf16 autocast (losses stay float32). Opt-in:
    # it diverged once on an H100 (see climgen.training.common.autocast)
    precision: Literal["float32", "bfloat16"] = "float32"
    threads: int | None = Field(None, ge=1)
    output: str
    init_from: str | None = None  # "default" or a checkpoint: fine-tune instead of training from scratch
    model: ModelSection = ModelSection()
    data: DataSection = DataSection()
    pretrain: PretrainSection = PretrainSection()
    adversarial: AdversarialSection = AdversarialSection()
    baseline: BaselineSection | None = None
    base_dir: Path = Path(".")

    @model_validator(mode="after")
    def _consistent(self):
        if self.output.endswith(("/", "\\")):
            raise ValueError(
                f"output names the checkpoint to write, without suffix (e.g. models/my-model), not a folder: {self.output!r}"
            )
        stages = [self.pretrain.max_stages] + [self.adversarial.max_stages] * bool(self.adversarial.steps)
        multiple = self.baseline.factor if self.baseline is not None else 2 ** max(stages)
        if self.data.crop_size % multiple:
            raise ValueError(
                f"data.crop_size {self.data.crop_size} must be a multiple of {multiple} (the crops are coarsened by it)"
            )
        return self

    def resolve(self, path: str) -> str:
        """A path from the recipe, relative to the recipe file's folder."""
        candidate = Path(path).expanduser()
        return str(candidate if candidate.is_absolute() else (self.base_dir / candidate).resolve())


def load_recipe(path: str | Path) -> TrainRecipe:
    """Read and validate a training recipe; errors name the offending field."""
    return load_yaml_model(path, TrainRecipe, base_dir=Path(path).resolve().parent)

"""The adaptive multi-scale generator (AMSGM): progressive x2 refinement stages.

Each stage doubles the resolution: a bicubic upsampling of the current field plus a learned
residual, then an exact projection that makes every 2x2 block average back to the coarser
value. Because each stage is coarse-consistent, the field after any number of stages is valid
and coarse-consistent too; that is what lets the adaptive policy stop a tile early.

The network works in locally normalised units (field minus its neighbourhood mean, divided by
the neighbourhood standard deviation), so one model serves temperature in K, elevation in m or
wind in m s-1, and its output scales with the input (affine equivariance). All stages share
weights: a field that is self-similar across scales is refined by the same operator.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from climgen.models.blocks import MultiBranchBlock, conv, local_mean, standard_normal


@dataclass(frozen=True)
class GeneratorConfig:
    """Architecture of :class:`AdaptiveMultiScaleGenerator` (saved with every checkpoint)."""

    channels: int = 32
    blocks: int = 3
    covariate_slots: int = 2
    kernel_sizes: tuple[int, ...] = (3, 5, 7)
    norm_window: int = 7
    context_window: int = 15
    max_stages: int = 4

    @classmethod
    def from_dict(cls, values: dict) -> GeneratorConfig:
        """Build from a JSON mapping, rejecting unknown keys."""
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown generator config keys: {sorted(unknown)}")
        values = dict(values)
        if "kernel_sizes" in values:
            values["kernel_sizes"] = tuple(int(k) for k in values["kernel_sizes"])
        return cls(**values)

    def to_dict(self) -> dict:
        """JSON-ready mapping."""
        values = asdict(self)
        values["kernel_sizes"] = list(self.kernel_sizes)
        return values


def coarsen(field: torch.Tensor, factor: int) -> torch.Tensor:
    """Unweighted block mean over ``factor`` x ``factor`` cells."""
    return F.avg_pool2d(field, factor) if factor > 1 else field


def project_to_coarse(fine: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
    """Shift each block of ``fine`` so that its mean equals the matching ``coarse`` value."""
    factor = fine.shape[-1] // coarse.shape[-1]
    error = coarsen(fine, factor) - coarse
    return fine - F.interpolate(error, scale_factor=factor, mode="nearest")


def add_detail(field: torch.Tensor, std: torch.Tensor, detail: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
    """One x2 stage's output: ``field`` upsampled bicubically plus ``detail`` (on the fine grid,
    in the input's local standard deviations ``std``, times ``gain``), projected so every
    2 x 2 block averages to ``field``."""
    std_fine = F.interpolate(std, scale_factor=2, mode="bilinear", align_corners=False)
    if gain != 1.0:
        std_fine = gain * std_fine
    return project_to_coarse(bicubic_upsample(field, 2) + std_fine * detail, field)


def bicubic_upsample(field: torch.Tensor, factor: int) -> torch.Tensor:
    """Bicubic interpolation to ``factor`` times the resolution (cell-centre aligned)."""
    return F.interpolate(field, scale_factor=factor, mode="bicubic", align_corners=False)


def masked_coarsen(values: torch.Tensor, mask: torch.Tensor, factor: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Block mean of ``values`` over valid cells only, and the fraction of valid cells."""
    if factor == 1:
        return values, mask
    weight = coarsen(mask, factor)
    total = coarsen(values * mask, factor)
    return torch.where(weight > 0, total / weight.clamp_min(1e-12), torch.zeros_like(total)), weight


# magnitudes (largest absolute value of a field) refined as they are: outside them, float32
# squares overflow (above ~1e19) or the standardisation's absolute floor of 1e-12 takes over
# (aerosol mixing ratios of 1e-10 kg/kg), so those fields are scaled by a power of 2 first
PLAIN_MAGNITUDES = (2.0**-20, 2.0**40)


def magnitude_scale(field: torch.Tensor) -> torch.Tensor:
    """Per sample, 1 for ordinary magnitudes and otherwise the power of 2 that brings the
    largest absolute value to [1, 2): exact in floating point, and the generator is
    equivariant to scale, so the result is the same field in better-conditioned numbers."""
    largest = field.detach().abs().amax(dim=tuple(range(1, field.ndim)), keepdim=True).float()
    plain = (largest >= PLAIN_MAGNITUDES[0]) & (largest <= PLAIN_MAGNITUDES[1])
    exponent = torch.floor(torch.log2(largest.clamp_min(torch.finfo(torch.float32).tiny)))
    return torch.where(plain | (largest == 0), torch.ones_like(largest), torch.exp2(-exponent)).to(field.dtype)


def local_standardise(field: torch.Tensor, window: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(field - local mean) / local std over ``window`` cells, with the mean and std: the
    models work in these units, so one model serves any variable and scales with it.

    Always in float32, also under bf16 autocast: bf16 keeps 3 significant digits, so a local
    mean of 290 K would be off by a kelvin, far more than most local deviations.
    """
    with torch.autocast(device_type=field.device.type, enabled=False):
        return _local_standardise(field.float(), window)


def _local_standardise(field: torch.Tensor, window: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    # local means of deviations from the window's own mean: the sums stay small, so float32
    # keeps details of 0.01 K on 290 K that sums of raw values would round away
    offset = field.mean(dim=(-2, -1), keepdim=True)
    centred = field - offset
    mean = local_mean(centred, window)
    anomaly = centred - mean
    variance = local_mean(anomaly**2, window)
    scale_floor = 1e-6 * field.abs().mean(dim=(-2, -1), keepdim=True) + 1e-12
    std = torch.sqrt(variance + scale_floor**2)
    return anomaly / std, mean + offset, std


class AdaptiveMultiScaleGenerator(nn.Module):
    """Refines a coarse field by successive x2 stages with per-stage latent noise.

    Inputs are tensors only: ``coarse`` (B, 1, h, w); optional ``covariates`` (B, K, H, W) at the
    final resolution with a validity ``covariate_mask`` of the same shape (1 valid, 0 missing);
    one noise map per stage. Covariates are averaged down to each stage's resolution.
    """

    def __init__(self, config: GeneratorConfig | None = None):
        super().__init__()
        self.config = config or GeneratorConfig()
        cfg = self.config
        # inputs at the stage's coarse resolution: normalised field (1), covariates at the fine
        # resolution folded into 4 channels each (4K), their coverage (K), noise folded (4).
        in_channels = 1 + 5 * cfg.covariate_slots + 4
        self.head = conv(in_channels, cfg.channels, 3)
        self.body = nn.Sequential(
            *[MultiBranchBlock(cfg.channels, cfg.kernel_sizes, cfg.context_window) for _ in range(cfg.blocks)]
        )
        self.tail = conv(cfg.channels, 4, 3)
        nn.init.zeros_(self.tail.weight)
        nn.init.zeros_(self.tail.bias)

    def _normalise(self, field: torch.Tensor, window: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return local_standardise(field, window)

    def refine_stage(
        self,
        field: torch.Tensor,
        covariates: torch.Tensor | None,
        covariate_mask: torch.Tensor | None,
        noise: torch.Tensor,
        residual_gain: float = 1.0,
    ) -> torch.Tensor:
        """One x2 stage: ``field`` (B,1,h,w) -> (B,1,2h,2w), exactly coarse-consistent.
        ``covariates`` None stands for all slots missing (zeros, as a zero mask gives);
        ``residual_gain`` scales the learned detail (0: bicubic, projected; 1: as trained)."""
        if residual_gain == 0:  # no learned detail: the network's work would be multiplied by 0
            return project_to_coarse(bicubic_upsample(field, 2), field)
        window = self.config.norm_window
        normalised, _, std = self._normalise(field, window)
        if covariates is None:
            # the normalisation of empty slots costs a tenth of a stage and gives zeros
            fine_shape = (field.shape[0], self.config.covariate_slots, 2 * field.shape[-2], 2 * field.shape[-1])
            cov_norm = covariate_mask = field.new_zeros(fine_shape)
        else:
            cov_norm, _, _ = self._normalise(covariates, 2 * window + 1)
            cov_norm = cov_norm * covariate_mask
        inputs = torch.cat(
            [
                normalised,
                F.pixel_unshuffle(cov_norm, 2),
                coarsen(covariate_mask, 2),
                F.pixel_unshuffle(noise, 2),
            ],
            dim=1,
        )
        residual = F.pixel_shuffle(self.tail(self.body(self.head(inputs))), 2).float()
        return add_detail(field, std, residual, residual_gain)

    def forward(
        self,
        coarse: torch.Tensor,
        covariates: torch.Tensor | None = None,
        covariate_mask: torch.Tensor | None = None,
        stages: int = 1,
        noise: list[torch.Tensor] | None = None,
        generator: torch.Generator | None = None,
        residual_gain: float = 1.0,
    ) -> list[torch.Tensor]:
        """Run ``stages`` x2 stages; returns the field after each stage (coarsest first).
        ``residual_gain`` scales every stage's learned detail (see :meth:`refine_stage`)."""
        if not 1 <= stages <= self.config.max_stages:
            raise ValueError(f"stages must be in 1..{self.config.max_stages}, got {stages}")
        batch, _, height, width = coarse.shape
        factor = 2**stages
        slots = self.config.covariate_slots
        fine_shape = (batch, slots, height * factor, width * factor)
        if covariates is not None:
            if covariate_mask is None:
                covariate_mask = torch.isfinite(covariates).to(coarse.dtype)
            if covariates.shape[1] < slots:
                missing = (batch, slots - covariates.shape[1], *fine_shape[2:])
                covariates = torch.cat([covariates, coarse.new_zeros(missing)], 1)
                covariate_mask = torch.cat([covariate_mask, coarse.new_zeros(missing)], 1)
            covariates = torch.nan_to_num(covariates) * covariate_mask
        outputs = []
        scale = magnitude_scale(coarse)
        field = coarse * scale
        for stage in range(1, stages + 1):
            down = 2 ** (stages - stage)
            stage_cov = stage_mask = None
            if covariates is not None:
                stage_cov, stage_mask = masked_coarsen(covariates, covariate_mask, down)
            if noise is not None:
                stage_noise = noise[stage - 1]
            else:
                stage_noise = standard_normal((batch, 1, field.shape[-2] * 2, field.shape[-1] * 2), generator, coarse)
            field = self.refine_stage(field, stage_cov, stage_mask, stage_noise, residual_gain)
            outputs.append(field / scale)
        return outputs


class BicubicBaseline(nn.Module):
    """Bicubic interpolation with the generator's interface (the reference every claim beats)."""

    def __init__(self, coarse_consistent: bool = False):
        super().__init__()
        self.coarse_consistent = coarse_consistent

    def forward(self, coarse: torch.Tensor, covariates=None, covariate_mask=None, stages: int = 1, noise=None, generator=None):
        outputs = []
        for stage in range(1, stages + 1):
            upsampled = bicubic_upsample(coarse, 2**stage)
            outputs.append(project_to_coarse(upsampled, coarse) if self.coarse_consistent else upsampled)
        return outputs

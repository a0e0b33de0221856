"""Learned baselines with the generator's interface: a single-scale GAN and a conditional VAE.

Both jump the whole factor at once (no hierarchy, no per-stage exits, plain 3x3 residual
blocks without multi-branch fusion), so comparing them with the adaptive multi-scale generator
measures what the hierarchy and the blocks bring. They share its conventions: locally
normalised inputs (any units), covariates and their coverage, a residual over bicubic scaled
by the local spread, and an exact projection onto the coarse field. Their latent map lives on
the coarse grid; under the refinement pipeline it is built from the per-stage noise maps, so
seeds and members work the same way.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from climgen.models.blocks import standard_normal
from climgen.models.generator import bicubic_upsample, local_standardise, masked_coarsen, project_to_coarse

ARCHITECTURES = ("srgan", "cvae")


@dataclass(frozen=True)
class BaselineConfig:
    """Architecture of a single-scale baseline (saved with every checkpoint)."""

    factor: int = 4
    channels: int = 32
    blocks: int = 6
    covariate_slots: int = 2
    norm_window: int = 7

    @property
    def stages(self) -> int:
        return self.factor.bit_length() - 1

    @property
    def max_stages(self) -> int:  # the pipeline asks every model how deep it can go
        return self.stages

    @classmethod
    def from_dict(cls, values: dict) -> BaselineConfig:
        """Build from a JSON mapping, rejecting unknown keys."""
        unknown = set(values) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown baseline config keys: {sorted(unknown)}")
        config = cls(**values)
        if config.factor not in (2, 4, 8, 16):
            raise ValueError(f"factor must be 2, 4, 8 or 16, got {config.factor}")
        return config

    def to_dict(self) -> dict:
        """JSON-ready mapping."""
        return asdict(self)


class ResidualBlock(nn.Module):
    """conv 3x3 - ReLU - conv 3x3, plus the input (SRGAN/EDSR style, no normalisation)."""

    def __init__(self, channels: int):
        super().__init__()
        self.first = nn.Conv2d(channels, channels, 3, padding=1)
        self.second = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.second(F.relu(self.first(x)))


class SingleScaleGenerator(nn.Module):
    """SRGAN-like generator: one jump by ``factor`` from a coarse-grid latent map."""

    def __init__(self, config: BaselineConfig | None = None):
        super().__init__()
        self.config = config or BaselineConfig()
        cfg = self.config
        latent = cfg.stages
        self.head = nn.Conv2d(1 + 2 * cfg.covariate_slots + latent, cfg.channels, 3, padding=1)
        self.body = nn.Sequential(*[ResidualBlock(cfg.channels) for _ in range(cfg.blocks)])
        upsampling = []
        for _ in range(cfg.stages):
            upsampling += [nn.Conv2d(cfg.channels, 4 * cfg.channels, 3, padding=1), nn.PixelShuffle(2), nn.ReLU()]
        self.upsample = nn.Sequential(*upsampling)
        self.tail = nn.Conv2d(cfg.channels, 1, 3, padding=1)
        nn.init.zeros_(self.tail.weight)
        nn.init.zeros_(self.tail.bias)

    def latent_from(self, coarse: torch.Tensor, noise: list[torch.Tensor] | None, generator) -> torch.Tensor:
        """A unit-variance latent map on the coarse grid: the pipeline's per-stage noise maps
        averaged down to it (and rescaled), or fresh draws."""
        batch, _, height, width = coarse.shape
        if noise is None:
            shape = (batch, self.config.stages, height, width)
            return standard_normal(shape, generator, coarse)
        maps = [F.avg_pool2d(stage_noise, 2 ** (stage + 1)) * 2 ** (stage + 1) for stage, stage_noise in enumerate(noise)]
        return torch.cat(maps, dim=1)

    def decode(
        self, coarse: torch.Tensor, covariates: torch.Tensor | None, covariate_mask: torch.Tensor | None, latent: torch.Tensor
    ) -> torch.Tensor:
        """Refine ``coarse`` by the factor given the latent map; exactly coarse-consistent."""
        cfg = self.config
        normalised, _, std = local_standardise(coarse, cfg.norm_window)
        batch, _, height, width = coarse.shape
        slots = cfg.covariate_slots
        if covariates is None:
            pooled = coarse.new_zeros((batch, slots, height, width))
            coverage = coarse.new_zeros((batch, slots, height, width))
        else:
            mask = torch.isfinite(covariates).to(coarse.dtype) if covariate_mask is None else covariate_mask
            pooled, coverage = masked_coarsen(torch.nan_to_num(covariates) * mask, mask, cfg.factor)
            pooled = local_standardise(pooled, 2 * cfg.norm_window + 1)[0] * coverage
            if pooled.shape[1] < slots:
                padding = coarse.new_zeros((batch, slots - pooled.shape[1], height, width))
                pooled, coverage = torch.cat([pooled, padding], 1), torch.cat([coverage, padding], 1)
        inputs = torch.cat([normalised, pooled, coverage, latent], dim=1)
        features = self.head(inputs)
        residual = self.tail(self.upsample(features + self.body(features)))
        std_fine = F.interpolate(std, scale_factor=cfg.factor, mode="bilinear", align_corners=False)
        return project_to_coarse(bicubic_upsample(coarse, cfg.factor) + std_fine * residual, coarse)

    def forward(
        self,
        coarse: torch.Tensor,
        covariates: torch.Tensor | None = None,
        covariate_mask: torch.Tensor | None = None,
        stages: int | None = None,
        noise: list[torch.Tensor] | None = None,
        generator: torch.Generator | None = None,
    ) -> list[torch.Tensor]:
        """The refined field as a one-element list (the generator interface)."""
        if stages is not None and stages != self.config.stages:
            raise ValueError(f"this single-scale model refines by exactly x{self.config.factor} ({self.config.stages} stages)")
        return [self.decode(coarse, covariates, covariate_mask, self.latent_from(coarse, noise, generator))]


class ConditionalVAE(SingleScaleGenerator):
    """Conditional VAE: the decoder is a single-scale generator; an encoder (training only)
    maps the fine truth and its coarse field to the latent's mean and log-variance."""

    def __init__(self, config: BaselineConfig | None = None):
        super().__init__(config)
        cfg = self.config
        encoder_in = cfg.factor * cfg.factor + 1
        self.encoder = nn.Sequential(
            nn.Conv2d(encoder_in, cfg.channels, 3, padding=1),
            nn.ReLU(),
            ResidualBlock(cfg.channels),
            nn.Conv2d(cfg.channels, 2 * cfg.stages, 3, padding=1),
        )

    def encode(self, fine: torch.Tensor, coarse: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance of q(latent | fine, coarse), on the coarse grid."""
        _, mean, std = local_standardise(coarse, self.config.norm_window)
        up = self.config.factor
        scale = F.interpolate(std, scale_factor=up, mode="bilinear", align_corners=False)
        detail = (fine - bicubic_upsample(coarse, up)) / scale
        moments = self.encoder(torch.cat([F.pixel_unshuffle(detail, up), (coarse - mean) / std], dim=1))
        mu, log_variance = moments.chunk(2, dim=1)
        return mu, log_variance.clamp(-8, 8)

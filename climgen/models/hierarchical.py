"""The hierarchical generator: each x2 stage gives the mean of its detail, or a sample of it.

A stage refines a field by 2 as :class:`~climgen.models.generator.AdaptiveMultiScaleGenerator`
does (bicubic upsampling plus learned detail in units of the local standard deviation, then
the exact projection onto the coarse values), with a plain residual network that runs on the
stage's input grid. Its features feed two heads:

- the **mean head** gives the detail's conditional mean (trained on the absolute error): with
  no noise, the stages chain to the best estimate;
- the **sample head** adds, from that stage's own noise map, a draw of what the mean cannot
  know (trained on the fair CRPS of two draws): with noise, the stages chain to one member of
  an ensemble. Each stage has its own noise, so the latent space is hierarchical: a member's
  large scales come from the first stages' noise, its fine detail from the last.

Every convolution is unpadded; the stage pads its input once, by replication, as far as the
network reaches, so a window's output depends only on cells within that reach and tiles with
enough halo agree with the whole domain.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from climgen.models.blocks import local_mean, standard_normal
from climgen.models.generator import (
    add_detail,
    bicubic_upsample,
    local_standardise,
    magnitude_scale,
    masked_coarsen,
    project_to_coarse,
)


@dataclass(frozen=True)
class HierarchicalConfig:
    """Architecture of :class:`HierarchicalGenerator` (saved with every checkpoint)."""

    channels: int = 24
    blocks: int = 4
    covariate_slots: int = 2
    sampler_channels: int = 16
    norm_window: int = 7
    roughness_window: int = 21
    max_stages: int = 4
    sample_scale: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0)
    """Scale of every stage's drawn detail by the number of stages the chain has (1, 2, 3, 4):
    the sample head learns each stage's spread alone, and chained stages add to it, so a
    longer chain is calibrated with less (``benchmarks/spread_calibration.py``)."""

    def __post_init__(self):
        least = {"covariate_slots": 0, "max_stages": 1}
        for item in fields(self):
            value = getattr(self, item.name)
            if item.name == "sample_scale":
                if not value or any(not isinstance(scale, (int, float)) or scale < 0 for scale in value):
                    raise ValueError(f"sample_scale must be non-negative numbers, got {value!r}")
            elif isinstance(value, bool) or not isinstance(value, int) or value < least.get(item.name, 1):
                raise ValueError(f"{item.name} must be an integer of at least {least.get(item.name, 1)}, got {value!r}")

    @classmethod
    def from_dict(cls, values: dict) -> HierarchicalConfig:
        """Build from a JSON mapping, rejecting unknown keys."""
        unknown = set(values) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown generator config keys: {sorted(unknown)}")
        values = dict(values)
        if isinstance(values.get("sample_scale"), (list, tuple)):
            values["sample_scale"] = tuple(
                float(scale) if isinstance(scale, (int, float)) else scale for scale in values["sample_scale"]
            )
        return cls(**values)

    def to_dict(self) -> dict:
        """JSON-ready mapping."""
        return asdict(self)


class ResidualBlock(nn.Module):
    """Two unpadded 3 x 3 convolutions with a ReLU between, added to the input's centre."""

    def __init__(self, channels: int):
        super().__init__()
        self.first = nn.Conv2d(channels, channels, 3)
        self.second = nn.Conv2d(channels, channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[..., 2:-2, 2:-2] + self.second(torch.relu_(self.first(x)))


def covariate_regression(
    normalised: torch.Tensor, covariates: torch.Tensor, covariate_mask: torch.Tensor, window: int
) -> torch.Tensor:
    """Per covariate, the detail that a local linear regression of the field on it predicts:
    the slope of the field (``normalised``, in local standard deviations, on the stage's input
    grid) on the covariate's block means over ``window`` cells, times the covariate's own
    detail beyond its bicubic interpolation, in its local standard deviations; folded to the
    input grid (4 channels a covariate). Where temperature follows the terrain the slope is
    the (normalised) lapse rate, and the product is the terrain's detail as temperature; where
    the two do not co-vary it is near 0. The network weighs it."""
    coarse, weight = masked_coarsen(covariates, covariate_mask, 2)
    coarse_norm, _, coarse_std = local_standardise(coarse, window)
    valid = (weight > 0).to(coarse.dtype)
    slope = local_mean(normalised * coarse_norm * valid, window) / (local_mean(coarse_norm**2 * valid, window) + 1e-3)
    std_fine = F.interpolate(coarse_std, scale_factor=2, mode="bilinear", align_corners=False)
    detail = (covariates - bicubic_upsample(coarse, 2)) / std_fine * covariate_mask
    predicted = F.interpolate(slope.clamp(-3.0, 3.0), scale_factor=2, mode="nearest") * detail
    return F.pixel_unshuffle(predicted, 2)


FIELD_CHANNELS = 2
"""Network inputs of the field itself (its value in local standard deviations, its roughness);
the covariates' channels follow them."""


class LeadingChannelsConv2d(nn.Conv2d):
    """A convolution that also takes only the leading input channels, with their weights: a
    stage without covariates gives the field and its roughness alone, since the covariate
    channels would all be 0 (the same result, about 14% less work a stage)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == self.in_channels:
            return super().forward(x)
        return self._conv_forward(x, self.weight[:, : x.shape[1]], self.bias)


class StageNetwork(nn.Module):
    """Features of one stage's inputs, and the two heads that turn them into detail."""

    def __init__(self, in_channels: int, config: HierarchicalConfig):
        super().__init__()
        channels = config.channels
        self.head = LeadingChannelsConv2d(in_channels, channels, 3)
        self.body = nn.Sequential(*[ResidualBlock(channels) for _ in range(config.blocks)])
        self.mean_head = nn.Conv2d(channels, 4, 3)
        self.sample_head = nn.Sequential(
            nn.Conv2d(channels + 4, config.sampler_channels, 3), nn.ReLU(), nn.Conv2d(config.sampler_channels, 4, 3)
        )
        for layer in (self.mean_head, self.sample_head[-1]):  # untrained: bicubic, projected
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        self.reach = 2 + 2 * config.blocks + 1  # head, blocks, and the deeper of the two heads' margins

    def features(self, inputs: torch.Tensor) -> torch.Tensor:
        """Features over the input's cells and the margin the heads need around them."""
        padded = F.pad(inputs, (self.reach,) * 4, mode="replicate")
        # channels-last: the layout oneDNN's and cuDNN's fastest convolutions take
        return self.body(self.head(padded.contiguous(memory_format=torch.channels_last)))

    def mean(self, features: torch.Tensor) -> torch.Tensor:
        """The detail's conditional mean, 4 sub-cells per input cell."""
        return self.mean_head(features)

    def sample(self, features: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """A draw of the detail around the mean, from ``noise`` folded to the input grid."""
        padded = F.pad(F.pixel_unshuffle(noise, 2), (2,) * 4, mode="replicate")
        return self.sample_head(torch.cat([features, padded.to(features.dtype)], 1))


class HierarchicalGenerator(nn.Module):
    """Refines a coarse field by successive x2 stages; best estimate without noise, samples with.

    Inputs are tensors only: ``coarse`` (B, 1, h, w); optional ``covariates`` (B, K, H, W) at the
    final resolution with a validity ``covariate_mask`` of the same shape (1 valid, 0 missing);
    ``noise``: one map per stage (B, 1, 2^s h, 2^s w), or None for the best estimate.
    """

    best_estimate_without_noise = True  # the refiner passes noise only to draw members

    def __init__(self, config: HierarchicalConfig | None = None):
        super().__init__()
        self.config = config or HierarchicalConfig()
        # field, roughness; per covariate: 4 folded values, coverage, 4 folded regression detail
        in_channels = FIELD_CHANNELS + 9 * self.config.covariate_slots
        self.stage_network = StageNetwork(in_channels, self.config)

    @property
    def window_margin(self) -> int:
        """Cells the stage network computes around every window it is given, at the stage's
        input resolution (the input is padded that far once; see :class:`StageNetwork`)."""
        return self.stage_network.reach

    def stage_macs(self, height: int, width: int, sample: bool = False, covariates: bool = True) -> int:
        """Multiply-accumulates of one stage on a ``height`` x ``width`` input, the margins its
        unpadded convolutions compute included; ``sample`` adds the sample head; without
        ``covariates`` the first convolution takes the field and its roughness only."""
        network = self.stage_network
        layers = [(network.head, network.reach - 1)]
        for index, block in enumerate(network.body, start=1):
            layers += [(block.first, network.reach - 2 * index), (block.second, network.reach - 1 - 2 * index)]
        layers.append((network.mean_head, 1))
        if sample:
            layers += [(network.sample_head[0], 1), (network.sample_head[-1], 0)]
        head_inputs = network.head.in_channels if covariates else FIELD_CHANNELS
        return sum(
            (height + 2 * margin)
            * (width + 2 * margin)
            * (layer.in_channels if layer is not network.head else head_inputs)
            * layer.out_channels
            * 9
            for layer, margin in layers
        )

    def macs_per_cell(self, sample: bool = False, covariates: bool = True) -> float:
        """:meth:`stage_macs` per input cell of a large window (where the margins vanish)."""
        return self.stage_macs(1000, 1000, sample, covariates) / 1e6

    def stage_inputs(self, field: torch.Tensor, covariates: torch.Tensor | None, covariate_mask: torch.Tensor | None):
        """(network inputs, local std): the field in local standard deviations, the log of its
        local roughness against a wider neighbourhood's, and per covariate its values folded
        in, its coverage and the detail a local regression on it predicts
        (:func:`covariate_regression`)."""
        config = self.config
        normalised, _, std = local_standardise(field, config.norm_window)
        wide = torch.sqrt(local_mean(std**2, config.roughness_window))
        parts = [normalised, torch.log(std / wide)]
        if covariates is not None:  # without, the covariate channels would be 0: left out
            cov_norm, _, _ = local_standardise(covariates, 2 * config.norm_window + 1)
            parts += [F.pixel_unshuffle(cov_norm * covariate_mask, 2), F.avg_pool2d(covariate_mask, 2)]
            parts.append(covariate_regression(normalised, covariates, covariate_mask, 2 * config.norm_window + 1))
        return torch.cat(parts, 1), std

    def refine_stage(
        self,
        field: torch.Tensor,
        covariates: torch.Tensor | None,
        covariate_mask: torch.Tensor | None,
        noise: torch.Tensor | None,
        residual_gain: float = 1.0,
        sample_scale: float = 1.0,
    ) -> torch.Tensor:
        """One x2 stage, exactly coarse-consistent: the mean (``noise`` None) or a sample.
        ``residual_gain`` scales the mean's learned detail (0: bicubic, projected),
        ``sample_scale`` the drawn detail around it."""
        if residual_gain == 0 and noise is None:  # no learned mean detail: nothing to run
            return project_to_coarse(bicubic_upsample(field, 2), field)
        inputs, std = self.stage_inputs(field, covariates, covariate_mask)
        features = self.stage_network.features(inputs)
        detail = self.stage_network.mean(features)[..., 1:-1, 1:-1]
        if residual_gain != 1.0:
            detail = residual_gain * detail
        if noise is not None:  # the sample's spread is the model's own: a damped mean keeps it
            detail = detail + sample_scale * self.stage_network.sample(features, noise)
        return self.compose(field, std, detail)

    @staticmethod
    def compose(field: torch.Tensor, std: torch.Tensor, detail: torch.Tensor) -> torch.Tensor:
        """Bicubic upsampling plus ``detail`` (4 sub-cells per cell, in local standard
        deviations), projected so every 2 x 2 block averages to ``field``."""
        return add_detail(field, std, F.pixel_shuffle(detail.float(), 2))

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
        """Run ``stages`` x2 stages; returns the field after each stage (coarsest first). Without
        ``noise`` and ``generator`` it is the best estimate; with ``generator`` (and no noise)
        each stage's noise is drawn from it."""
        if not 1 <= stages <= self.config.max_stages:
            raise ValueError(f"stages must be in 1..{self.config.max_stages}, got {stages}")
        covariates, covariate_mask = self._fill_slots(coarse, covariates, covariate_mask, stages)
        outputs = []
        scale = magnitude_scale(coarse)
        field = coarse * scale
        sample_scale = self.config.sample_scale[min(stages, len(self.config.sample_scale)) - 1]
        for stage in range(1, stages + 1):
            stage_cov = stage_mask = None
            if covariates is not None:
                stage_cov, stage_mask = masked_coarsen(covariates, covariate_mask, 2 ** (stages - stage))
            stage_noise = None
            if noise is not None:
                stage_noise = noise[stage - 1]
            elif generator is not None:
                shape = (field.shape[0], 1, 2 * field.shape[-2], 2 * field.shape[-1])
                stage_noise = standard_normal(shape, generator, field)
            field = self.refine_stage(field, stage_cov, stage_mask, stage_noise, residual_gain, sample_scale)
            outputs.append(field / scale)
        return outputs

    def _fill_slots(self, coarse, covariates, covariate_mask, stages: int):
        """Covariates padded with empty slots to the model's count, NaN zeroed and masked."""
        if covariates is None:
            return None, None
        if covariate_mask is None:
            covariate_mask = torch.isfinite(covariates).to(coarse.dtype)
        slots = self.config.covariate_slots
        if covariates.shape[1] < slots:
            batch, _, height, width = covariates.shape
            missing = coarse.new_zeros((batch, slots - covariates.shape[1], height, width))
            covariates = torch.cat([covariates, missing], 1)
            covariate_mask = torch.cat([covariate_mask, missing], 1)
        return torch.nan_to_num(covariates) * covariate_mask, covariate_mask

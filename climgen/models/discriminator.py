"""Multi-scale patch discriminator for adversarial training (stage 2).

Each scale judges patches of (candidate fine field, bicubic upsampling of its coarse field),
both standardised by the coarse field's statistics, so the judgement is about the added detail
and not about units. Returns logits and intermediate features (for feature matching).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PatchDiscriminator(nn.Module):
    """A small convolutional patch classifier."""

    def __init__(self, channels: int = 32):
        super().__init__()
        self.layers = nn.ModuleList(
            [
                nn.Conv2d(2, channels, 3, padding=1),
                nn.Conv2d(channels, 2 * channels, 4, stride=2, padding=1),
                nn.Conv2d(2 * channels, 2 * channels, 4, stride=2, padding=1),
            ]
        )
        self.head = nn.Conv2d(2 * channels, 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        features = []
        for layer in self.layers:
            x = F.leaky_relu(layer(x), 0.2)
            features.append(x)
        return self.head(x), features


class MultiScaleDiscriminator(nn.Module):
    """Patch discriminators at full and half resolution."""

    def __init__(self, channels: int = 32, scales: int = 2):
        super().__init__()
        self.scales = nn.ModuleList([PatchDiscriminator(channels) for _ in range(scales)])

    def forward(
        self, fine: torch.Tensor, coarse_upsampled: torch.Tensor, reference: torch.Tensor
    ) -> list[tuple[torch.Tensor, list[torch.Tensor]]]:
        """Judge ``fine`` given the bicubic upsampling of its coarse field; ``reference`` (the
        coarse field) sets the standardisation."""
        mean = reference.mean(dim=(-2, -1), keepdim=True)
        std = reference.std(dim=(-2, -1), keepdim=True) + 1e-6 * (reference.abs().mean(dim=(-2, -1), keepdim=True) + 1)
        x = torch.cat([(fine - mean) / std, (coarse_upsampled - mean) / std], dim=1)
        results = []
        for index, discriminator in enumerate(self.scales):
            scaled = F.avg_pool2d(x, 2**index) if index else x
            results.append(discriminator(scaled))
        return results

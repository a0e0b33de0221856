"""A fixed feature extractor for Frechet distances between gridded fields (no learned weights).

Inception features, the usual choice for FID, are trained on photographs, need a download,
and see RGB images. Climate fields are single-channel and unit-bearing, so climgen compares
them through fixed multi-scale statistics of each patch instead: at 1x, 2x and 4x coarser
scales, the mean and spread of the gradient magnitude and of the absolute Laplacian and the
mean local variance, plus the log power in four radial wavenumber bands. 19 numbers per patch,
the same for every release: distances are comparable across versions. For a distance, each
feature is standardised by its spread over the truth's patches (:meth:`FieldFeatures.standardise_on`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

SCALES = (1, 2, 4)
BANDS = 4


class FieldFeatures(nn.Module):
    """(N, C, P, P) patches (channels are averaged) -> (N, 19) features, in float64."""

    def __init__(self):
        super().__init__()
        laplacian = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])
        gradient_x = torch.tensor([[-0.5, 0.0, 0.5]])
        self.register_buffer("laplacian", laplacian[None, None])
        self.register_buffer("gradient_x", gradient_x[None, None])
        self.register_buffer("gradient_y", gradient_x.T.contiguous()[None, None])
        self.register_buffer("centre", torch.zeros(19, dtype=torch.float64))
        self.register_buffer("scale", torch.ones(19, dtype=torch.float64))

    def standardise_on(self, patches: torch.Tensor) -> FieldFeatures:
        """Centre and scale every feature by its mean and spread over ``patches`` (the truth's),
        so each feature weighs the same in a Frechet distance whatever its natural size."""
        with torch.no_grad():
            self.centre.zero_()
            self.scale.fill_(1.0)
            raw = self(patches)
            self.centre.copy_(raw.mean(0))
            self.scale.copy_(raw.std(0).clamp_min(1e-6 * raw.abs().mean().item() + 1e-12))
        return self

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        x = patches.double()
        if x.shape[1] > 1:
            x = x.mean(dim=1, keepdim=True)
        features = []
        for scale in SCALES:
            level = F.avg_pool2d(x, scale) if scale > 1 else x
            gx = F.conv2d(level, self.gradient_x.double())[..., 1:-1, :]
            gy = F.conv2d(level, self.gradient_y.double())[..., :, 1:-1]
            magnitude = torch.sqrt(gx**2 + gy**2 + 1e-24)
            curvature = F.conv2d(level, self.laplacian.double()).abs()
            local_mean = F.avg_pool2d(level, 3, stride=1)
            local_variance = F.avg_pool2d(level**2, 3, stride=1) - local_mean**2
            for values in (magnitude, curvature):
                flat = values.flatten(1)
                features += [flat.mean(1), flat.std(1)]
            features.append(local_variance.flatten(1).mean(1))
        spectrum = torch.fft.rfft2(x - x.mean(dim=(-2, -1), keepdim=True)).abs() ** 2
        ky = torch.fft.fftfreq(x.shape[-2], device=x.device).abs()[:, None]
        kx = torch.fft.rfftfreq(x.shape[-1], device=x.device)[None, :]
        radius = torch.sqrt(ky**2 + kx**2) / 0.5
        for band in range(BANDS):
            inside = (radius > band / BANDS) & (radius <= (band + 1) / BANDS)
            features.append(torch.log10(spectrum[..., inside].mean(-1).flatten(1).mean(1) + 1e-12))
        return (torch.stack(features, dim=1) - self.centre) / self.scale

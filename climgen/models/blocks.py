"""Building blocks of the adaptive multi-scale generator.

All pooling is over a fixed neighbourhood, never over the whole input, so a block's output at a
pixel depends only on nearby pixels: tiles with enough halo give the same result as the whole
domain, which is what lets tiles of a large domain blend without seams.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import nn

LOG2_E = 1.0 / math.log(2.0)


def standard_normal(shape: tuple, generator: torch.Generator | None, like: torch.Tensor) -> torch.Tensor:
    """Unit normal noise of ``shape`` in ``like``'s device and dtype, drawn on ``generator``'s
    device: a CPU generator gives the same draws whichever device the model runs on."""
    device = generator.device if generator is not None else like.device
    return torch.randn(shape, generator=generator, device=device, dtype=like.dtype).to(like.device)


def local_mean(x: torch.Tensor, window: int) -> torch.Tensor:
    """Mean over a ``window`` x ``window`` neighbourhood, with replicated edges (same shape)."""
    pad = window // 2
    padded = F.pad(x, (pad, pad, pad, pad), mode="replicate")
    # a box filter is separable: two 1-D means cost 2k instead of k*k per pixel
    if x.device.type != "cpu":
        # pooling sums in float32 on a GPU, where convolutions may round inputs to tf32 (10
        # mantissa bits: a 3000 m mean off by metres, more than a flat region's whole spread)
        return F.avg_pool2d(F.avg_pool2d(padded, (1, window), stride=1), (window, 1), stride=1)
    channels = x.shape[1]
    if channels < 8:
        # few channels (fields, covariates): sums of shifted views, four times faster there
        # than convolutions and as exact
        height, width = x.shape[-2:]
        rows = padded[..., :, :width].clone()
        for shift in range(1, window):
            rows += padded[..., :, shift : shift + width]
        total = rows[..., :height, :].clone()
        for shift in range(1, window):
            total += rows[..., shift : shift + height, :]
        return total / (window * window)
    # many channels: two depthwise convolutions, exact float32 and ten times faster than pooling
    row = x.new_full((channels, 1, 1, window), 1.0 / window)
    return F.conv2d(F.conv2d(padded, row, groups=channels), row.view(channels, 1, window, 1), groups=channels)


def conv(in_channels: int, out_channels: int, kernel_size: int, groups: int = 1) -> nn.Conv2d:
    """A same-size convolution with replicated padding (no artificial zero border)."""
    return nn.Conv2d(
        in_channels,
        out_channels,
        kernel_size,
        padding=kernel_size // 2,
        padding_mode="replicate",
        groups=groups,
    )


class MultiBranchBlock(nn.Module):
    """Residual block mixing several receptive fields with a light attention fusion.

    Branches: a full 3x3 convolution and depthwise-separable 5x5 and 7x7 convolutions (cheap
    on CPU). A channel attention computed from neighbourhood-pooled features gives each branch
    a learned weight per channel (softmax over branches); a spatial attention from channel mean
    and max gates the fused map; a pooled context branch adds regional information.
    """

    def __init__(self, channels: int, kernel_sizes: tuple[int, ...] = (3, 5, 7), context: int = 15):
        super().__init__()
        branches = []
        for size in kernel_sizes:
            if size <= 3:
                branches.append(conv(channels, channels, size))
            else:
                branches.append(
                    nn.Sequential(
                        conv(channels, channels, size, groups=channels),
                        nn.Conv2d(channels, channels, 1),
                    )
                )
        self.branches = nn.ModuleList(branches)
        self.context_window = context
        hidden = max(channels // 4, 4)
        self.branch_attention = nn.Sequential(
            nn.Conv2d(channels, hidden, 1),
            nn.GELU(),
            nn.Conv2d(hidden, len(kernel_sizes) * channels, 1),
        )
        self.context = nn.Conv2d(channels, channels, 1)
        self.spatial_attention = conv(2, 1, 7)
        self.project = nn.Conv2d(channels, channels, 1)
        self.activation = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [self.activation(branch(x)) for branch in self.branches]
        pooled = local_mean(functools.reduce(torch.add, features), self.context_window)
        # softmax over branches, per channel and pixel, on contiguous channel slices (reductions
        # across a stacked branch axis are several times slower on CPU); exponentials as powers
        # of 2 of logits scaled by log2(e): the same values, three times faster than exp on CPU
        logits = self.branch_attention(pooled).chunk(len(features), dim=1)
        largest = functools.reduce(torch.maximum, logits)
        scores = [(logit - largest).mul_(LOG2_E).exp2_() for logit in logits]
        fused = scores[0] * features[0]
        for score, feature in zip(scores[1:], features[1:], strict=True):
            fused.addcmul_(score, feature)
        fused = fused.div_(functools.reduce(torch.add, scores)).add_(self.context(pooled))
        gate_input = torch.cat([fused.mean(dim=1, keepdim=True), fused.amax(dim=1, keepdim=True)], 1)
        fused = fused * torch.sigmoid(self.spatial_attention(gate_input))
        return x + self.project(fused)

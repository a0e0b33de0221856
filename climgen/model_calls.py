"""The model-call half of :class:`~climgen.refine.TileRefiner`: the tensors a batch of windows
needs (field, covariates on the stage's grid, noise keyed on the global grid) and one call of
the model on the refiner's device and precision, fewer windows at a time when the device runs
out of memory."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from climgen.errors import ClimgenWarning, ConfigError, warn_user
from climgen.noise import noise_window
from climgen.tiling import fine_slices


def local_window(window: tuple[slice, slice], origin: tuple[int, int]) -> tuple[slice, slice]:
    """A global coarse window relative to an array that starts at cell ``origin``."""
    return tuple(slice(p.start - o, p.stop - o) for p, o in zip(window, origin, strict=True))


@dataclass
class RegionInputs:
    """What the windows of one region share: the covariates as float32 tensors (K, H*f, W*f)
    with their validity (1 valid, 0 missing), the coarse cell they start at, and the noise
    blocks drawn so far (see :func:`noise_window`)."""

    covariates: object = None  # torch.Tensor or None; typed loosely so this imports without torch
    covariate_mask: object = None
    origin: tuple[int, int] = (0, 0)
    noise_blocks: dict = field(default_factory=dict)


_LEARNED_BATCH: dict[str, int] = {}
"""Windows per model call that fit each device, learned from running out of memory (a dask
worker makes a refiner per task: each starts where the last one ended)."""


def learned_batch_size(device: str, default: int) -> int:
    """Windows per model call on ``device``: ``default``, or fewer if this process ran out of memory there."""
    return min(default, _LEARNED_BATCH.get(device, default))


class ModelCalls:
    """Model calls of a :class:`~climgen.refine.TileRefiner` (which sets ``torch``, ``device``,
    ``factor``, ``precision``, ``batch_size``, ``sample``, ``flip``, ``residual_gain``,
    ``compiled`` and ``_forward``)."""

    def region_inputs(self, covariates: np.ndarray | None = None, origin: tuple[int, int] = (0, 0)) -> RegionInputs:
        """The shared inputs of a region's windows: covariates (K, H*f, W*f) from coarse cell
        ``origin`` (missing values masked), and an empty store of noise blocks."""
        if covariates is None:
            return RegionInputs(origin=origin)
        torch = self.torch
        values = torch.as_tensor(np.ascontiguousarray(covariates), dtype=torch.float32)
        mask = torch.isfinite(values).to(torch.float32)
        return RegionInputs(torch.nan_to_num(values), mask, origin)

    def run_stages(
        self,
        windows: list[tuple[slice, slice]],
        inputs,
        keys: list[tuple],
        last: int,
        shared: RegionInputs | None = None,
        first: int = 1,
    ) -> list:
        """Stages ``first`` to ``last`` of the model on ``inputs`` (B, h, w): the field over
        coarse ``windows`` at the resolution of stage ``first - 1`` (array or tensor). Returns
        one float32 tensor (B, 1, ., .) per stage on the refiner's device."""
        coarse, covariates, mask, stage_noise = self.model_inputs(windows, inputs, keys, last, shared, first)
        return self._model_call(coarse, covariates, mask, last - first + 1, stage_noise)

    def model_inputs(
        self,
        windows: list[tuple[slice, slice]],
        inputs,
        keys: list[tuple],
        depth: int,
        shared: RegionInputs | None = None,
        first: int = 1,
    ):
        """The model's tensors for ``inputs`` (B, h, w) over coarse ``windows``, for stages
        ``first`` to ``depth``: the field (B, 1, h, w), covariates and mask on the grid of
        stage ``depth`` (or None), and one noise map per stage."""
        torch = self.torch
        shared = shared or RegionInputs()
        coarse = torch.as_tensor(inputs, dtype=torch.float32)[:, None]
        pairs = list(zip(windows, keys, strict=True))
        stage_noise = [
            torch.from_numpy(
                np.stack([noise_window(key, stage, *fine_slices(w, 2**stage), shared.noise_blocks) for w, key in pairs])
            )[:, None]
            for stage in range(first, depth + 1)
            if self.sample
        ]
        covariates = mask = None
        if shared.covariates is not None:
            covariates, mask = self._covariate_windows(windows, depth, shared)
        return coarse, covariates, mask, stage_noise

    def _covariate_windows(self, windows: list[tuple[slice, slice]], depth: int, shared: RegionInputs):
        """Each window's covariates on the depth's grid: block means of the final-grid values."""
        torch = self.torch
        down = self.factor // 2**depth
        cells = []
        for window in windows:
            cells.append((slice(None), *fine_slices(local_window(window, shared.origin), self.factor)))
        values = torch.stack([shared.covariates[part] for part in cells])
        valid = torch.stack([shared.covariate_mask[part] for part in cells])
        if down > 1:
            pooled = torch.nn.functional.avg_pool2d(values * valid, down)
            valid = torch.nn.functional.avg_pool2d(valid, down)
            values = torch.where(valid > 0, pooled / valid.clamp_min(1e-12), torch.zeros_like(pooled))
        return values, valid

    def _model_call(self, coarse, covariates, mask, depth: int, stage_noise):
        """One model call on the refiner's device and precision, returning each stage's output
        in float32 on that device; with ``compile``, a short last batch is padded to the batch
        size, so compiled graphs see one shape per depth."""
        torch = self.torch
        count = coarse.shape[0]
        tensors = [coarse, covariates, mask, *stage_noise]
        on_gpu = self.device.type == "cuda"
        if self.compiled and count < self.batch_size:
            tensors = [t if t is None else torch.cat([t, t[-1:].expand(self.batch_size - count, *t.shape[1:])]) for t in tensors]
        moved = [t if t is None else t.to(self.device, non_blocking=True) for t in tensors]
        if on_gpu:
            moved = [t if t is None else t.contiguous(memory_format=torch.channels_last) for t in moved]
        dims = [dim for dim, flipped in zip((-2, -1), self.flip, strict=True) if flipped]
        if dims:
            moved = [t if t is None else t.flip(dims) for t in moved]
        with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bfloat16"):
            # only the generator scales its detail; other models are called as they were
            gain = {} if self.residual_gain == 1.0 else {"residual_gain": self.residual_gain}
            outputs = self._forward(moved[0], moved[1], moved[2], stages=depth, noise=moved[3:] or None, **gain)
        return [(output.flip(dims) if dims else output)[:count].float() for output in outputs]

    def _fewer_windows(self, window: tuple) -> None:
        """After the device ran out of memory: halve the windows per model call, for this
        refiner and every later one on the device in this process (nothing is lost; the call is
        repeated), or, at one window a call, say what to change."""
        if self.batch_size == 1:
            raise ConfigError(
                f"{self.device} ran out of memory refining one {' x '.join(map(str, window[-2:]))} window: "
                "use a smaller tile_size or merge_tiles, or a device with more memory"
            )
        self.batch_size //= 2
        _LEARNED_BATCH[str(self.device)] = min(self.batch_size, _LEARNED_BATCH.get(str(self.device), self.batch_size))
        if self.device.type == "cuda":
            self.torch.cuda.empty_cache()
        warn_user(
            f"{self.device} ran out of memory: {self.batch_size} window{'s' if self.batch_size > 1 else ''} "
            "per model call from here on",
            ClimgenWarning,
        )

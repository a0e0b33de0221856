"""Training samples: generated multi-scale fields and crops of real gridded fields.

Every sample is a fine field (the truth) with optional covariates on the same grid; the trainer
coarsens it by block mean. Generated fields cover smooth to rough spectra, spatially varying
roughness, fronts, bounded fractions and intermittent fields; covariates are sometimes related
to the target (with random sign and strength), sometimes at large scales only (the target
follows a smoothed covariate, so its fine detail is not the covariate's: land fraction and
terrain co-vary, but a coastline's step is not in the terrain) and sometimes not at all, so the
model learns to use a covariate only as far as the coarse data supports it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

from climgen.errors import InputError
from climgen.random_fields import gaussian_random_field

if TYPE_CHECKING:
    import xarray as xr


def _standardise(values: np.ndarray) -> np.ndarray:
    return (values - values.mean()) / (values.std() + 1e-12)


@dataclass
class RealFieldPool:
    """Crops of real 2-D fields (with optional paired covariates on the same grid)."""

    targets: list[np.ndarray]
    covariates: list[np.ndarray | None]

    def crop(self, rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray | None]:
        index = rng.integers(len(self.targets))
        target = self.targets[index]
        ny, nx = target.shape
        y0 = rng.integers(0, ny - size + 1)
        x0 = rng.integers(0, nx - size + 1)
        window = (slice(y0, y0 + size), slice(x0, x0 + size))
        covariate = self.covariates[index]
        return target[window].copy(), None if covariate is None else covariate[window].copy()


def load_real_pool(sources: list[dict], crop_size: int = 0) -> RealFieldPool:
    """Read real fields listed as ``{path, variable, covariate_path?, covariate_variable?, sel?}``.

    ``sel`` is a mapping of coordinate slices (``{"rlon": [null, 18.0]}``) that keeps a training
    region, so a different region can be held out for validation. Every 2-D slice (time step,
    level) of a variable with spatial dimensions last is a separate target; slices with missing
    values are skipped.
    """
    import xarray as xr

    targets: list[np.ndarray] = []
    covariates: list[np.ndarray | None] = []
    for source in sources:
        with xr.open_dataset(source["path"]) as ds:
            values = np.asarray(
                _select(_variable(ds, source["variable"], source["path"]), source.get("sel")).values, dtype=np.float64
            )
            covariate = None
            if source.get("covariate_path"):
                with xr.open_dataset(source["covariate_path"]) as cov_ds:
                    cov = _select(_variable(cov_ds, source["covariate_variable"], source["covariate_path"]), source.get("sel"))
                    covariate = np.asarray(cov.squeeze(drop=True).values, dtype=np.float64)
        name = f"{source['path']}:{source['variable']}"
        if values.ndim < 2 or min(values.shape[-2:]) < crop_size:
            raise InputError(
                f"training field {name} must have 2 spatial dimensions of at least {crop_size} cells, got {values.shape}"
            )
        kept = [field for field in values.reshape(-1, *values.shape[-2:]) if np.isfinite(field).all()]
        if not kept:
            raise InputError(f"training field {name} has no 2-D slice without missing values")
        targets.extend(kept)
        covariates.extend([covariate] * len(kept))
    return RealFieldPool(targets, covariates)


def _variable(ds: xr.Dataset, name: str, path) -> xr.DataArray:
    """``ds[name]``, or a clear error that lists the file's variables."""
    if name not in ds.data_vars:
        raise InputError(f"training field {path} has no variable {name!r}; it has {sorted(ds.data_vars)}")
    return ds[name]


def _select(data, selection: dict | None):
    if not selection:
        return data
    unknown = [name for name in selection if name not in data.coords]
    if unknown:
        raise InputError(
            f"sel names {unknown}, which {data.name!r} has no coordinate for; it has {sorted(map(str, data.coords))}"
        )
    return data.sel({name: slice(*bounds) for name, bounds in selection.items()})


class SampleGenerator:
    """Draws (fine target, covariates, covariate mask) samples of a fixed size."""

    def __init__(
        self,
        size: int,
        covariate_slots: int,
        real_pool: RealFieldPool | None,
        real_fraction: float,
        large_scale_covariate_share: float = 0.0,
    ):
        self.size = size
        self.slots = covariate_slots
        self.real_pool = real_pool
        self.real_fraction = real_fraction if real_pool is not None else 0.0
        self.large_scale_covariate_share = large_scale_covariate_share

    def terrain_like(self, rng: np.random.Generator) -> np.ndarray:
        """A real terrain crop when available, else a rough generated surface."""
        if self.real_pool is not None and rng.random() < 0.7:
            target, _ = self.real_pool.crop(rng, self.size)
            return target
        return self.generated_field(rng)

    def generated_field(self, rng: np.random.Generator) -> np.ndarray:
        size = self.size
        field = gaussian_random_field(rng, (size, size), rng.uniform(1.8, 4.2))
        if rng.random() < 0.6:  # spatially varying roughness: flat plains beside mountains
            modulation = np.exp(rng.uniform(0.5, 1.5) * gaussian_random_field(rng, (size, size), 4.0))
            field = gaussian_random_field(rng, (size, size), 4.5) * rng.uniform(0, 2) + modulation * field
        if rng.random() < 0.3:  # a front
            angle = rng.uniform(0, np.pi)
            yy, xx = np.mgrid[0:size, 0:size]
            distance = np.cos(angle) * (xx - size / 2) + np.sin(angle) * (yy - size / 2) - rng.uniform(-size / 4, size / 4)
            field = field + rng.uniform(1, 4) * np.tanh(distance / rng.uniform(0.5, 4))
        kind = rng.random()
        if kind < 0.1:  # a bounded fraction (land-sea-like)
            field = 1.0 / (1.0 + np.exp(-4 * _standardise(field)))
        elif kind < 0.2:  # intermittent, non-negative (precipitation-like)
            field = np.maximum(_standardise(field) - rng.uniform(0, 1), 0)
        return field * rng.uniform(0.1, 100) + rng.uniform(-300, 300)

    def __call__(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        size, slots = self.size, self.slots
        covariates = np.zeros((slots, size, size))
        mask = np.zeros((slots, size, size))
        if self.real_fraction and rng.random() < self.real_fraction:
            target, paired = self.real_pool.crop(rng, size)
            if paired is not None and rng.random() < 0.5:
                slot = rng.integers(slots)
                covariates[slot], mask[slot] = paired, 1.0
        else:
            target = self.generated_field(rng)
            if rng.random() < 0.6:  # a covariate related to the target with random strength
                slot = rng.integers(slots)
                covariate = self.terrain_like(rng)
                strength = rng.uniform(-1, 1)
                related = covariate
                if self.large_scale_covariate_share and rng.random() < self.large_scale_covariate_share:
                    related = ndimage.gaussian_filter(covariate, rng.uniform(2, 8), mode="reflect")
                target = _standardise(target) * (1 - abs(strength)) + strength * _standardise(related)
                target = target * rng.uniform(0.1, 50) + rng.uniform(-300, 300)
                covariates[slot], mask[slot] = covariate, 1.0
        if rng.random() < 0.2:  # unrelated covariate in a free slot
            free = [s for s in range(slots) if not mask[s].any()]
            if free:
                covariates[free[0]], mask[free[0]] = self.terrain_like(rng), 1.0
        rotations = rng.integers(4)
        flip = rng.random() < 0.5

        def augment(values: np.ndarray) -> np.ndarray:
            values = np.rot90(values, rotations, axes=(-2, -1))
            return np.ascontiguousarray(values[..., ::-1] if flip else values)

        return augment(target), augment(covariates), augment(mask)

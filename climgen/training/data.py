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
    """Crops of real 2-D fields (with optional paired covariates on the same grid). With
    ``min_valid`` below 1 the fields may have missing cells (NaN: land in an ocean field) and a
    crop is drawn again until at least that share of it has data."""

    targets: list[np.ndarray]
    covariates: list[np.ndarray | None]
    min_valid: float = 1.0

    def crop(self, rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray | None]:
        for _ in range(1000):
            index = rng.integers(len(self.targets))
            target = self.targets[index]
            ny, nx = target.shape
            y0 = rng.integers(0, ny - size + 1)
            x0 = rng.integers(0, nx - size + 1)
            window = (slice(y0, y0 + size), slice(x0, x0 + size))
            if self.min_valid >= 1 or np.isfinite(target[window]).mean() >= self.min_valid:
                covariate = self.covariates[index]
                return target[window].copy(), None if covariate is None else covariate[window].copy()
        raise InputError(
            f"the training fields give few crops of {size} cells with {self.min_valid:.0%} of them valid: "
            "use a smaller crop_size or fields with more data"
        )


def load_real_pool(sources: list[dict], crop_size: int = 0, min_valid: float = 1.0) -> RealFieldPool:
    """Read real fields listed as ``{path, variable, covariate_path?, covariate_variable?, sel?}``.

    ``sel`` is a mapping of coordinate ranges (``{"rlon": [null, 18.0]}``, inclusive) that
    keeps a training region, so a different region can be held out for validation; a range
    is taken whichever way the coordinate runs, and longitudes in either convention. Every 2-D
    slice (time step, level) of a variable with spatial dimensions last is a separate target.
    With ``min_valid`` 1 slices with missing values are skipped; below 1 a slice is kept when
    some crop of it can have that share of valid cells (:class:`RealFieldPool`). A covariate is
    one 2-D field on the target's grid.
    """
    import xarray as xr

    targets: list[np.ndarray] = []
    covariates: list[np.ndarray | None] = []
    for source in sources:
        name = f"{source['path']}:{source['variable']}"
        with xr.open_dataset(source["path"]) as ds:
            selected = _select(_variable(ds, source["variable"], source["path"]), source.get("sel"), name)
            values = np.asarray(selected.values, dtype=np.float64)
            covariate = None
            if source.get("covariate_path"):
                with xr.open_dataset(source["covariate_path"]) as cov_ds:
                    cov_name = f"{source['covariate_path']}:{source['covariate_variable']}"
                    cov = _variable(cov_ds, source["covariate_variable"], source["covariate_path"])
                    # the field's time or level selection is not the covariate's: a static one has none
                    spatial = {dim: bounds for dim, bounds in (source.get("sel") or {}).items() if dim in cov.dims}
                    cov = _select(cov, spatial, cov_name)
                    covariate = _covariate_on_grid(cov.squeeze(drop=True), selected, cov_name, name)
        if values.ndim < 2:
            raise InputError(f"training field {name} must have 2 spatial dimensions, got {values.ndim}")
        if min(values.shape[-2:]) < crop_size:
            raise InputError(
                f"training field {name} is {values.shape[-2]} x {values.shape[-1]} cells, smaller than a crop "
                f"(crop_size {crop_size}): use a smaller crop_size or a larger region"
            )
        slices = values.reshape(-1, *values.shape[-2:])
        if min_valid >= 1:
            kept = [field for field in slices if np.isfinite(field).all()]
        else:
            kept = [field for field in slices if _best_crop_share(field, crop_size) >= min_valid]
        if not kept:
            raise InputError(
                f"training field {name} has no 2-D slice without missing values (the hierarchical generator, "
                "the default, trains on fields with missing cells)"
                if min_valid >= 1
                else f"training field {name} has no crop of {crop_size} cells with {min_valid:.0%} of them valid"
            )
        targets.extend(kept)
        covariates.extend([covariate] * len(kept))
    return RealFieldPool(targets, covariates, min_valid)


def _best_crop_share(field: np.ndarray, size: int) -> float:
    """The largest share of valid cells in any ``size`` x ``size`` crop of ``field`` (of the
    whole field when ``size`` is 0)."""
    valid = np.isfinite(field).astype(np.float64)
    if size <= 0 or size > min(field.shape):
        return float(valid.mean())
    summed = np.pad(valid.cumsum(0).cumsum(1), ((1, 0), (1, 0)))  # box sums from an integral image
    boxes = summed[size:, size:] - summed[:-size, size:] - summed[size:, :-size] + summed[:-size, :-size]
    return float(boxes.max() / size**2)


def _covariate_on_grid(covariate: xr.DataArray, target: xr.DataArray, name: str, target_name: str) -> np.ndarray:
    """The covariate's values, if it is one 2-D field on the target's grid; else a clear error."""
    if covariate.ndim != 2:
        raise InputError(f"covariate {name} must be one 2-D field, but it has dimensions {covariate.dims}")
    if covariate.shape != target.shape[-2:]:
        raise InputError(
            f"covariate {name} ({covariate.shape[0]} x {covariate.shape[1]}) is not on the grid of {target_name} "
            f"({target.shape[-2]} x {target.shape[-1]}): give it on the same grid (and the same sel)"
        )
    for dim in target.dims[-2:]:
        if dim in covariate.coords and dim in target.coords:
            if not np.allclose(np.asarray(covariate[dim], float), np.asarray(target[dim], float), rtol=0, atol=1e-6):
                raise InputError(f"covariate {name} is not on the grid of {target_name}: their {dim!r} differ")
    return np.asarray(covariate.values, dtype=np.float64)


def _variable(ds: xr.Dataset, name: str, path) -> xr.DataArray:
    """``ds[name]``, or a clear error that lists the file's variables."""
    if name not in ds.data_vars:
        raise InputError(f"training field {path} has no variable {name!r}; it has {sorted(ds.data_vars)}")
    return ds[name]


def _select(data, selection: dict | None, name: str = ""):
    """``data`` within each inclusive coordinate range of ``selection``, whichever way the
    coordinate runs; longitude ranges in either convention (-100..-10 on 0..360 data is
    260..350). A range that selects nothing is an error naming the coordinate's extent."""
    if not selection:
        return data
    unknown = [dim for dim in selection if dim not in data.coords]
    if unknown:
        raise InputError(
            f"sel names {unknown}, which {data.name!r} has no coordinate for; it has {sorted(map(str, data.coords))}"
        )
    indexers = {}
    for dim, bounds in selection.items():
        values = np.asarray(data[dim].values)
        dated = values.dtype.kind == "M" or (values.dtype.kind == "O" and values.size and hasattr(values.flat[0], "calendar"))
        given_dates = any(isinstance(bound, str) for bound in bounds)
        if dated != given_dates and any(bound is not None for bound in bounds):
            wanted = "dates such as '2005-01-01'" if dated else "numbers in its units"
            raise InputError(f"sel {dim}: {list(bounds)} for {name}, whose {dim} takes {wanted}")
        if dated:  # xarray reads the dates in the coordinate's calendar; a partial date covers its period
            indexers[dim] = slice(*bounds)
            continue
        low, high = (_on_convention(bound, values, data[dim]) for bound in bounds)
        if low is not None and high is not None and low > high:
            if _is_longitude(data[dim]) and bounds[0] < bounds[1]:
                raise InputError(
                    f"sel {dim}: {list(bounds)} crosses the longitude seam of {name} ({values.min():g} to "
                    f"{values.max():g}): give the two sides as two fields"
                )
            low, high = high, low
        descending = values.size > 1 and values[0] > values[-1]
        indexers[dim] = slice(high, low) if descending else slice(low, high)
    try:
        selected = data.sel(indexers)
    except (KeyError, ValueError, TypeError) as err:  # a date xarray cannot read
        raise InputError(f"sel of {name}: {err}") from err
    for dim, bounds in selection.items():
        if selected[dim].size == 0:
            values = data[dim].values
            extent = [
                f"{value:g}" if isinstance(value, (int, float, np.number)) else str(value)[:19]
                for value in (values[0], values[-1])
            ]
            raise InputError(
                f"sel {dim}: {list(bounds)} selects no cells of {name}, whose {dim} runs from {extent[0]} to {extent[1]}"
            )
    return selected


def _is_longitude(coordinate: xr.DataArray) -> bool:
    from climgen.grid import latlon_role

    return latlon_role(str(coordinate.name), coordinate) == "longitude" or str(coordinate.name) in ("lon", "longitude")


def _on_convention(bound: float | None, values: np.ndarray, coordinate: xr.DataArray) -> float | None:
    """A longitude bound moved to the convention of ``values`` where they are on the other one
    (``-10`` on data past 180 E is 350; ``200`` on data west of 0 is -160); else as given."""
    if bound is None or not _is_longitude(coordinate) or values.size == 0:
        return bound
    if bound < 0 and values.min() >= 0 and values.max() > 180:
        return bound % 360
    if bound > 180 and values.min() < 0:
        return bound - 360
    return bound


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
            if np.isfinite(target).all():  # a crop of a masked field is no terrain
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
                covariates[slot], mask[slot] = np.nan_to_num(paired), np.isfinite(paired)
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

"""Quality against truth: pointwise errors, structure, spectra, conservation, ensembles.

Functions take arrays shaped (..., y, x) (ensembles: (member, ..., y, x)); missing cells (NaN
in either field) are left out. DataArrays are taken as their values: an ensemble's
``realization`` first, and the others in the first one's order of dimensions, so fields stored
transposed are still compared cell by cell. No xarray here: ``climgen evaluate`` maps
datasets onto these functions.
"""

from __future__ import annotations

import functools

import numpy as np


def _on_arrays(metric):
    """Let ``metric`` take DataArrays and other array-likes: its array arguments as NumPy arrays."""

    @functools.wraps(metric)
    def wrapper(*args, **kwargs):
        args, kwargs = _in_one_order(list(args), dict(kwargs))
        return metric(*(_as_array(a) for a in args), **{key: _as_array(value) for key, value in kwargs.items()})

    return wrapper


def _in_one_order(args: list, kwargs: dict) -> tuple[list, dict]:
    """Labelled arrays (anything with ``dims`` and ``transpose``, as DataArrays) with an
    ensemble's ``realization`` first and the same other dimensions in the first one's order."""
    labelled = [value for value in [*args, *kwargs.values()] if hasattr(value, "dims") and hasattr(value, "transpose")]
    if not labelled:
        return args, kwargs
    order = [dim for dim in labelled[0].dims if dim != "realization"]

    def arranged(value):
        if not (hasattr(value, "dims") and hasattr(value, "transpose")):
            return value
        rest = [dim for dim in value.dims if dim != "realization"]
        if sorted(rest) == sorted(order):
            rest = order
        return value.transpose(*(["realization"] if "realization" in value.dims else []), *rest)

    return [arranged(value) for value in args], {key: arranged(value) for key, value in kwargs.items()}


def _as_array(value):
    """An array argument as a NumPy array, integers as float64 (their differences would wrap
    round); anything else as it is."""
    if not hasattr(value, "__array__"):
        return value
    array = np.asarray(value)
    return array.astype(np.float64) if array.dtype.kind in "iub" else array


def _valid(prediction: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Cells where both fields have data (NaN is missing; an infinity is a value, so a
    prediction that blew up scores as infinitely wrong, not as missing); the fields must have
    one shape (the same grid, in the same order of dimensions)."""
    if np.shape(prediction) != np.shape(truth):
        raise ValueError(
            f"fields of shape {np.shape(prediction)} and {np.shape(truth)} cannot be compared cell by cell: "
            "give them on the same grid, with their dimensions in the same order"
        )
    return ~np.isnan(prediction) & ~np.isnan(truth)


@_on_arrays
def rmse(prediction: np.ndarray, truth: np.ndarray) -> float:
    """Root-mean-square error over valid cells."""
    valid = _valid(prediction, truth)
    return float(np.sqrt(np.mean((prediction[valid] - truth[valid]) ** 2)))


@_on_arrays
def area_weighted_rmse(prediction: np.ndarray, truth: np.ndarray, weights: tuple[np.ndarray, np.ndarray]) -> float:
    """Root-mean-square error over valid cells, each weighted by its area (``weights``: row and
    column factors, :func:`climgen.grid.cell_weights`): on a lat/lon grid polar rows then count
    as little as they cover, the usual score for global fields."""
    area = np.broadcast_to(weights[0][:, None] * weights[1][None, :], np.shape(truth))
    valid = _valid(prediction, truth)
    return float(np.sqrt(np.sum(area[valid] * (prediction[valid] - truth[valid]) ** 2) / np.sum(area[valid])))


@_on_arrays
def bias(prediction: np.ndarray, truth: np.ndarray) -> float:
    """Mean of prediction minus truth."""
    valid = _valid(prediction, truth)
    return float(np.mean(prediction[valid] - truth[valid]))


@_on_arrays
def mae(prediction: np.ndarray, truth: np.ndarray) -> float:
    """Mean absolute error."""
    valid = _valid(prediction, truth)
    return float(np.mean(np.abs(prediction[valid] - truth[valid])))


@_on_arrays
def psnr(prediction: np.ndarray, truth: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB, with the truth's range as the peak (NaN without valid
    cells or for a constant truth, which has no peak; infinite for an exact prediction)."""
    valid = _valid(prediction, truth)
    if not valid.any():
        return float("nan")
    data_range = float(truth[valid].max() - truth[valid].min())
    error = rmse(prediction, truth)
    if error == 0:
        return float("inf")
    return float(20 * np.log10(data_range / error)) if data_range > 0 else float("nan")


def _as_images(prediction: np.ndarray, truth: np.ndarray):
    import torch

    fill = np.nanmean(truth)
    shape = truth.shape[-2:]
    to_tensor = lambda values: torch.as_tensor(np.nan_to_num(values, nan=fill).reshape(-1, 1, *shape), dtype=torch.float64)  # noqa: E731
    return to_tensor(prediction), to_tensor(truth), float(np.nanmax(truth) - np.nanmin(truth)) or 1.0


SSIM_WINDOW = 7
"""Cells a side of the Gaussian window (sigma 1.5) of every SSIM climgen reports."""


def _ssim_window(shape: tuple[int, ...]) -> int:
    """:data:`SSIM_WINDOW`, or on fields under 8 cells a side the largest odd window not
    longer than the shorter side less one (NaN scores below 3 cells)."""
    return min(SSIM_WINDOW, min(shape[-2:]) // 2 * 2 - 1)


def _windowed_ssim(prediction: np.ndarray, truth: np.ndarray, data_range: float) -> float:
    """Mean SSIM over the Gaussian windows (:func:`_ssim_window` cells a side, sigma 1.5) that
    lie wholly on cells where both fields have data, pooled over leading dimensions: with no
    missing cell it is pytorch-msssim's SSIM; NaN without a whole valid window. Windows that
    touch a missing cell are left out rather than filled, so a land mask neither raises nor
    lowers an ocean field's score."""
    import torch
    import torch.nn.functional as F
    from pytorch_msssim.ssim import gaussian_filter

    window = _ssim_window(truth.shape)
    valid = _valid(prediction, truth)
    if window < 3 or not valid.any():
        return float("nan")
    x, y, _ = _as_images(prediction, truth)
    missing = torch.as_tensor(~valid.reshape(x.shape), dtype=torch.float64)
    whole = F.max_pool2d(missing, window, stride=1)[:, 0] == 0  # windows without a missing cell
    if not whole.any():
        return float("nan")
    kernel = torch.signal.windows.gaussian(window, std=1.5, dtype=torch.float64)
    kernel = (kernel / kernel.sum()).reshape(1, 1, 1, window)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2  # pytorch-msssim's constants
    mu_x, mu_y = gaussian_filter(x, kernel), gaussian_filter(y, kernel)
    var_x = gaussian_filter(x * x, kernel) - mu_x**2
    var_y = gaussian_filter(y * y, kernel) - mu_y**2
    covariance = gaussian_filter(x * y, kernel) - mu_x * mu_y
    similarity = (2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1) * (2 * covariance + c2) / (var_x + var_y + c2)
    return float(similarity[:, 0][whole].mean())


@_on_arrays
def ssim(prediction: np.ndarray, truth: np.ndarray) -> float:
    """Structural similarity: the one definition behind every SSIM climgen reports (``climgen
    evaluate``, ``climgen benchmark``, training validation): pytorch-msssim's, with a Gaussian
    window of :data:`SSIM_WINDOW` cells (sigma 1.5; smaller on fields under 8 cells a side)
    and the truth's range as ``data_range``, averaged over the windows where both fields have
    data (a masked field is scored on its data alone). NaN on fields under 4 cells a side and
    without a whole window of valid cells."""
    valid = _valid(prediction, truth)
    data_range = float(truth[valid].max() - truth[valid].min()) if valid.any() else 1.0
    return _windowed_ssim(prediction, truth, data_range or 1.0)


@_on_arrays
def ms_ssim(prediction: np.ndarray, truth: np.ndarray) -> float | None:
    """Multi-scale SSIM with the standard 11-cell window and five scales; ``None`` when the
    field is too small (that needs more than 160 cells a side) or has missing cells (its
    coarser scales would mix them in)."""
    from pytorch_msssim import ms_ssim as ms_ssim_torch

    if min(truth.shape[-2:]) <= 160 or not _valid(prediction, truth).all():
        return None
    x, y, data_range = _as_images(prediction, truth)
    return float(ms_ssim_torch(x, y, data_range=data_range, size_average=True))


def _spectral_variance(field: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Variance of each 2-D cosine mode of ``field`` (leading dimensions averaged) and its
    wavenumbers in cycles per cell along y and x.

    A discrete cosine transform (DCT-II), as Denis et al. (2002, Mon. Wea. Rev. 130) do for
    limited-area fields: it mirrors the field at its edges instead of wrapping it round, so
    the jump between opposite edges of a regional (or pole-to-pole) domain does not leak power
    into every wavenumber, as a Fourier transform's does. Missing cells are replaced by the
    field mean; the mean is removed.
    """
    from scipy.fft import dctn

    values = np.asarray(field, dtype=np.float64)
    values = values.reshape(-1, *values.shape[-2:])
    values = np.where(np.isfinite(values), values, np.nanmean(values))
    values = values - values.mean(axis=(-2, -1), keepdims=True)
    ny, nx = values.shape[-2:]
    variance = (dctn(values, type=2, axes=(-2, -1), norm="ortho") ** 2).mean(axis=0) / (ny * nx)
    return variance, np.arange(ny)[:, None] / (2.0 * ny), np.arange(nx)[None, :] / (2.0 * nx)


@_on_arrays
def power_spectrum(field: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Radially averaged power spectrum: (wavenumber in cycles per cell, power), averaged over
    leading dimensions, from the cosine transform of :func:`_spectral_variance` (no leakage
    from the domain's edges). Needs at least 4 x 4 cells, the fewest with a wavenumber
    above the mean."""
    variance, ky, kx = _spectral_variance(field)
    ny, nx = variance.shape
    if min(ny, nx) < 4:
        raise ValueError(f"a power spectrum needs at least 4 x 4 cells; the field has {ny} x {nx}")
    k = np.hypot(ky, kx)
    edges = np.arange(1, min(ny, nx) // 2 + 1) / min(ny, nx)
    index = np.digitize(k.ravel(), edges)
    sums = np.bincount(index, weights=variance.ravel(), minlength=edges.size + 1)
    counts = np.bincount(index, minlength=edges.size + 1)
    centres = np.concatenate([[edges[0] / 2], (edges[1:] + edges[:-1]) / 2])
    radial = sums[: edges.size] / np.maximum(counts[: edges.size], 1)
    return centres[1:], radial[1:]


@_on_arrays
def top_octave_power(field: np.ndarray) -> float:
    """Mean power of the modes in the top octave of either axis (more than half the highest
    wavenumber, 0.25 to 0.5 cycles per cell), from the cosine transform: the finest detail
    a refinement adds. Compare with the truth's as a ratio."""
    variance, ky, kx = _spectral_variance(field)
    return float(variance[np.maximum(ky, kx) > 0.25].mean())


@_on_arrays
def spectral_error_per_octave(prediction: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Mean absolute log10 ratio of the prediction's to the truth's power, per octave of
    wavenumber (highest octave last). 0 is a perfect spectrum; 0.3 is a factor of 2. Empty
    for fields under 4 x 4 cells, which have no spectrum (:func:`power_spectrum`)."""
    if min(np.shape(truth)[-2:]) < 4 or min(np.shape(prediction)[-2:]) < 4:
        return {}
    k, truth_power = power_spectrum(truth)
    _, predicted_power = power_spectrum(prediction)
    nyquist = 0.5
    result = {}
    for octave in range(int(np.log2(nyquist / k[0])), 0, -1):
        low, high = nyquist / 2**octave, nyquist / 2 ** (octave - 1)
        band = (k > low) & (k <= high) & (truth_power > 0) & (predicted_power > 0)
        if band.any():
            result[f"{low:.3g}-{high:.3g}"] = float(np.mean(np.abs(np.log10(predicted_power[band] / truth_power[band]))))
    return result


@_on_arrays
def coarse_consistency_error(prediction: np.ndarray, coarse: np.ndarray, factor: int) -> float:
    """Largest absolute difference between block means of the prediction and the coarse input;
    infinite where a block has a missing cell but its coarse value is not missing (a gap the
    refinement let in), NaN where no coarse value is."""
    ny, nx = coarse.shape[-2:]
    if prediction.shape[-2:] != (ny * factor, nx * factor):
        raise ValueError(
            f"a field of {prediction.shape[-2]} x {prediction.shape[-1]} cells is not {ny} x {nx} coarse cells refined x{factor}"
        )
    blocks = prediction.reshape(*prediction.shape[:-2], ny, factor, nx, factor).mean(axis=(-3, -1))
    if np.any(np.isnan(blocks) & ~np.isnan(coarse)):
        return float("inf")
    valid = _valid(blocks, coarse)
    return float(np.max(np.abs(blocks[valid] - coarse[valid]))) if valid.any() else float("nan")


@_on_arrays
def crps(members: np.ndarray, truth: np.ndarray) -> float:
    """Continuous ranked probability score of an ensemble (members on axis 0), fair estimator
    averaged over valid cells. With one member it equals the MAE.

    The members' mean pairwise distance comes from the sorted members (for m sorted values,
    the sum of |x_i - x_j| over pairs is 2 * sum((2i - m - 1) x_(i))), so memory grows with
    members x cells, not members squared."""
    members = _members(members, truth)
    count = members.shape[0]
    valid = np.isfinite(truth) & np.isfinite(members).all(axis=0)
    skill = np.abs(members - truth[None]).mean(axis=0)
    if count == 1:
        return float(skill[valid].mean())
    ordered = np.sort(members, axis=0)
    weights = (2 * np.arange(1, count + 1) - count - 1).reshape(count, *([1] * (members.ndim - 1)))
    spread = (weights * ordered).sum(axis=0) / (count * (count - 1))
    return float((skill - spread)[valid].mean())


def _members(members: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """``members`` as float64, checked to be (member, *truth's shape)."""
    members = np.asarray(members, dtype=np.float64)
    if members.shape[1:] != np.shape(truth):
        raise ValueError(
            f"members must be shaped (member, *truth's shape {np.shape(truth)}), got {members.shape}: one member is members[None]"
        )
    return members


@_on_arrays
def rank_histogram(members: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Share of valid cells where the truth ranks 0..m among m members (axis 0): flat for a
    calibrated ensemble, U-shaped for one too narrow, peaked for one too wide. A truth equal
    to k members shares its cell evenly among the k + 1 ranks it could take."""
    truth = np.asarray(truth, dtype=np.float64)
    members = _members(members, truth)
    count = members.shape[0]
    valid = np.isfinite(truth) & np.isfinite(members).all(axis=0)
    below = (members < truth[None]).sum(axis=0)[valid]
    ties = (members == truth[None]).sum(axis=0)[valid]
    histogram = np.zeros(count + 1)
    for tied in np.unique(ties):
        chosen = below[ties == tied]
        for offset in range(tied + 1):
            histogram += np.bincount(chosen + offset, minlength=count + 1) / (tied + 1)
    return histogram / max(int(valid.sum()), 1)


@_on_arrays
def spread_skill(members: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Ensemble spread (the root of the members' mean variance) against the RMSE of the
    ensemble mean, both over the cells where the truth and every member have data. A calibrated
    ensemble of m members has a ratio near sqrt(m / (m + 1)): 0.82 for 2, 0.94 for 8 (the mean
    of m members carries 1/m of their spread in its own error)."""
    members = _members(members, truth)
    valid = np.isfinite(truth) & np.isfinite(members).all(axis=0)
    spread = float(np.sqrt(np.mean(members.var(axis=0, ddof=1)[valid]))) if members.shape[0] > 1 and valid.any() else 0.0
    skill = rmse(members.mean(axis=0), truth)
    return {"spread": spread, "rmse_of_mean": skill, "ratio": spread / skill if skill else float("nan")}


@_on_arrays
def diversity(members: np.ndarray) -> float:
    """Mean pairwise RMS distance between ensemble members (0 when all members are equal)."""
    members = np.asarray(members, dtype=np.float64)
    count = members.shape[0]
    if count < 2:
        return 0.0
    distances = [np.sqrt(np.nanmean((members[i] - members[j]) ** 2)) for i in range(count) for j in range(i + 1, count)]
    return float(np.mean(distances))


@_on_arrays
def diversity_ratio(members: np.ndarray, truth: np.ndarray) -> float:
    """Members' mean pairwise RMS distance over their mean RMS distance to the truth: about 1
    when the truth could be one more member, 0 when the members are copies (mode collapse)."""
    members = _members(members, truth)
    members = np.where(np.isfinite(truth)[None], members, np.nan)  # where the truth has data, as the distance to it
    to_truth = float(np.mean([rmse(member, truth) for member in members]))
    return diversity(members) / to_truth if to_truth > 0 else float("nan")


@_on_arrays
def detail_ssim(prediction: np.ndarray, truth: np.ndarray, reference: np.ndarray) -> float:
    """SSIM of the detail beyond ``reference`` (the bicubic interpolation of the coarse field):
    prediction and truth less it, the windows of :func:`ssim`, and the standard deviation of
    the truth's detail as the data range (its range would let SSIM's constants dominate
    wherever the detail is small, and score bicubic's zero detail near 1). Plain SSIM of a
    smooth field is near 1 for any method, bicubic included; this one is low for bicubic (its
    detail is 0) and 1 for the truth's own detail. Like :func:`ssim`, it is averaged over the
    windows where both fields have data; NaN on fields under 4 cells a side or without such a
    window."""
    detail, target = np.asarray(prediction) - reference, np.asarray(truth) - reference
    valid = _valid(detail, target)
    spread = float(np.std(target[valid])) if valid.any() else 0.0
    return _windowed_ssim(detail, target, spread if np.isfinite(spread) and spread > 0 else 1.0)


@_on_arrays
def summary(prediction: np.ndarray, truth: np.ndarray) -> dict[str, float | None]:
    """The pointwise and structural scores of one deterministic field."""
    return {
        "rmse": rmse(prediction, truth),
        "bias": bias(prediction, truth),
        "mae": mae(prediction, truth),
        "psnr": psnr(prediction, truth),
        "ssim": ssim(prediction, truth),
        "ms_ssim": ms_ssim(prediction, truth),
    }


@_on_arrays
def frechet_distance(prediction: np.ndarray, truth: np.ndarray, patch: int = 16, stride: int = 8) -> float:
    """Frechet distance between the patch-feature distributions of two fields (or stacks of
    fields), with :class:`climgen.models.features.FieldFeatures` as the fixed extractor and
    torchmetrics' FID computation. Fields are standardised by the truth's mean and spread, and
    each feature by its spread over the truth's patches, so the distance is unit-free and no
    feature dominates; 0 for identical fields. Needs at least 20 patches."""
    import torch
    from torchmetrics.image.fid import FrechetInceptionDistance

    from climgen.models.features import FieldFeatures

    truth = np.asarray(truth, dtype=np.float64).reshape(-1, *np.shape(truth)[-2:])
    prediction = np.asarray(prediction, dtype=np.float64).reshape(-1, *np.shape(prediction)[-2:])
    centre, spread = np.nanmean(truth), np.nanstd(truth) or 1.0

    def patches(values: np.ndarray) -> torch.Tensor:
        field = torch.from_numpy(np.nan_to_num((values - centre) / spread))[:, None]
        tiles = field.unfold(2, patch, stride).unfold(3, patch, stride)  # N, 1, rows, cols, P, P
        return tiles.permute(0, 2, 3, 1, 4, 5).reshape(-1, 1, patch, patch)

    real, fake = patches(truth), patches(prediction)
    if min(len(real), len(fake)) < 20:
        raise ValueError(f"frechet_distance needs at least 20 patches of {patch} cells; the field gives {len(real)}")
    metric = FrechetInceptionDistance(feature=FieldFeatures().standardise_on(real), reset_real_features=True)
    metric.update(real, real=True)
    metric.update(fake, real=False)
    return max(0.0, float(metric.compute()))

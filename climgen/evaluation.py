"""Compare a refined dataset with the truth on the same fine grid (``climgen evaluate``)."""

from __future__ import annotations

import json

import numpy as np
import xarray as xr

from climgen import metrics
from climgen.conservation import block_means, count_outside
from climgen.errors import ClimgenWarning, InputError, warn_user
from climgen.grid import area_weights, cell_bounds, check_factor, contiguous_longitude, find_spatial_axes, with_longitudes
from climgen.io.cf import MEMBER_DIM, refined_variables
from climgen.io.physical import physical_bounds
from climgen.regrid import block_mean


def _values(data: xr.DataArray, axes) -> np.ndarray:
    if not {axes.y, axes.x} <= set(data.dims):
        raise InputError(f"variable {data.name!r} does not span the spatial dimensions ({axes.y}, {axes.x})")
    leading = [dim for dim in data.dims if dim not in (axes.y, axes.x)]
    return np.asarray(data.transpose(*leading, axes.y, axes.x).values, dtype=np.float64)


def crop_to_prediction(truth: xr.Dataset, prediction: xr.Dataset) -> xr.Dataset:
    """The truth without the trailing rows and columns that the prediction lacks: coarsening
    drops those that do not fill a block, so a refined coarsened truth is that much smaller
    (:func:`check_same_grid` then checks the cells that remain)."""
    axes = find_spatial_axes(truth)
    crop = {
        name: slice(0, prediction.sizes[name])
        for name in (axes.y, axes.x)
        if name in prediction.sizes and prediction.sizes[name] < truth.sizes[name]
    }
    return truth.isel(crop) if crop else truth


def aligned_truth(truth: xr.Dataset, prediction: xr.Dataset) -> xr.Dataset:
    """The truth on the prediction's cells: stored across the longitude seam, turned to the
    longitudes climgen refines on; its rows and columns taken in the prediction's order and
    only where the prediction has cells (a truth stored north to south, or over a larger
    region, is compared on the prediction's cells); without the trailing rows and columns the
    prediction lacks (:func:`crop_to_prediction`); raises :class:`InputError` unless the cells
    that remain are the prediction's (:func:`check_same_grid`)."""
    axes = find_spatial_axes(truth)
    truth, _ = contiguous_longitude(truth, axes)
    truth = _on_prediction_cells(_on_prediction_longitudes(truth, prediction, axes), prediction, axes)
    truth = crop_to_prediction(truth, prediction)
    check_same_grid(truth, prediction)
    return truth


def _on_prediction_cells(truth: xr.Dataset, prediction: xr.Dataset, axes) -> xr.Dataset:
    """The truth's rows and columns whose cells hold the prediction's centres, in the
    prediction's order, along each axis where every centre lies in a cell of its own; along
    the others (and on curvilinear grids, compared by index) the truth as it is, for
    :func:`check_same_grid` to judge."""
    if axes.kind == "curvilinear":
        return truth
    picked = {}
    for name in (axes.y, axes.x):
        if name not in prediction.coords or prediction[name].ndim != 1 or truth[name].ndim != 1:
            continue
        edges = np.sort(cell_bounds(truth[name], truth), axis=1)
        order = np.argsort(edges[:, 0])
        lower, upper = edges[order, 0], edges[order, 1]
        centres = np.asarray(prediction[name].values, dtype=np.float64)
        index = np.clip(np.searchsorted(lower, centres, side="right") - 1, 0, lower.size - 1)
        inside = (centres > lower[index]) & (centres < upper[index])
        if (
            inside.all()
            and np.unique(index).size == index.size
            and not np.array_equal(order[index], np.arange(truth.sizes[name]))
        ):
            picked[name] = order[index]
    return truth.isel(picked) if picked else truth


def _on_prediction_longitudes(truth: xr.Dataset, prediction: xr.Dataset, axes) -> xr.Dataset:
    """A lat/lon truth with its longitudes on the prediction's convention (0..360 or
    -180..180: each on the turn that starts at the prediction's westernmost), bounds moved with
    their cells and columns sorted; as it is when nothing moves."""
    x = axes.x
    if axes.kind != "latlon" or x not in prediction.coords or prediction[x].ndim != 1 or truth[x].ndim != 1:
        return truth
    longitudes = np.asarray(truth[x].values, dtype=np.float64)
    start = float(np.min(prediction[x].values))
    moved = (longitudes - start) % 360.0 + start
    moved = np.where(np.isclose(moved, start + 360.0), start, moved)  # rounding just below a whole turn
    return truth if np.allclose(moved, longitudes) else with_longitudes(truth, x, moved)


def check_same_grid(truth: xr.Dataset, prediction: xr.Dataset) -> None:
    """Raise :class:`InputError` unless both datasets share the fine (y, x) cells: the same
    sizes, and every prediction centre inside the truth's cell of the same index (refined
    cells split each coarse cell equally, so on irregular grids, such as Gaussian latitudes
    whose polar cells reach the pole, their centres may differ by a fraction of a cell)."""
    axes = find_spatial_axes(truth)
    for name in (axes.y, axes.x):
        located = axes.kind != "curvilinear"  # curvilinear: index space, the same cells when the sizes agree
        if prediction.sizes.get(name) != truth.sizes[name] or (located and name not in prediction.coords):
            raise InputError(
                f"prediction and truth grids differ along {name!r}: refine a coarsened copy of the truth (climgen coarsen)"
            )
        if not located:
            continue
        edges = np.sort(cell_bounds(truth[name], truth), axis=1)
        centres = np.asarray(prediction[name].values, dtype=np.float64)
        if not ((centres > edges[:, 0]) & (centres < edges[:, 1])).all():
            raise InputError(
                f"prediction and truth coordinates differ along {name!r}: the prediction covers other cells "
                "(another region, or a coarser grid) than the truth's"
            )


def bicubic_reference(truth: np.ndarray, factor: int, weights: tuple | None = None) -> np.ndarray:
    """Bicubic interpolation of the truth's block means (weighted by the cells' area factors
    ``weights``, rows and columns, if given): the baseline every method must beat. Missing
    coarse cells (land in an ocean field) are filled from the nearest valid cell first, as
    climgen fills its own input, so cells beside them are not pulled towards a fill value."""
    import torch

    from climgen.models.generator import bicubic_upsample
    from climgen.refine import fill_nearest

    ny, nx = truth.shape[-2:]
    trimmed = truth[..., : ny // factor * factor, : nx // factor * factor]
    if weights is not None:
        weights = weights[0][: trimmed.shape[-2]], weights[1][: trimmed.shape[-1]]
    # the mean of each block's valid cells, as climgen coarsen (and xarray's skipna) makes it
    if weights is None:
        coarse = block_mean(trimmed, factor)
    else:
        finite = np.isfinite(trimmed)
        total = block_means(np.where(finite, trimmed, 0.0), factor, weights)
        share = block_means(finite.astype(np.float64), factor, weights)
        coarse = np.where(share > 0, total / np.where(share > 0, share, 1.0), np.nan)
    fields = coarse.reshape(-1, *coarse.shape[-2:])
    filled = np.stack([fill_nearest(field) if np.isfinite(field).any() else np.zeros_like(field) for field in fields])
    flat = torch.as_tensor(filled[:, None])
    upsampled = bicubic_upsample(flat, factor).numpy().reshape(*trimmed.shape)
    result = np.full(truth.shape, np.nan)
    result[..., : trimmed.shape[-2], : trimmed.shape[-1]] = upsampled
    return result


def _one_step_matched(truth: xr.DataArray, predicted: xr.DataArray, axes) -> tuple[xr.DataArray, xr.DataArray]:
    """Where one side holds a single step (a time or a level kept as a scalar coordinate, as
    ``.isel(time=0)`` leaves it) and the other a series of them, the series at that step."""
    truth = _step_of(truth, predicted, axes)
    return truth, _step_of(predicted, truth, axes)


def _step_of(series: xr.DataArray, single: xr.DataArray, axes) -> xr.DataArray:
    """``series`` at the labels of the non-spatial dimensions that ``single`` holds as scalars."""
    for dim in tuple(series.dims):
        if dim in (axes.y, axes.x, MEMBER_DIM) or dim in single.dims or dim not in series.coords:
            continue
        if dim not in single.coords or single[dim].ndim != 0:
            continue
        label = single[dim].values
        if not np.isin(label, series[dim].values).any():
            raise InputError(f"{series.name!r}: {dim} {label} of one file is not among the other's {dim!r} steps")
        series = series.sel({dim: label})
    return series


def _matched_steps(truth: xr.DataArray, predicted: xr.DataArray, axes) -> xr.DataArray:
    """``predicted`` with its non-spatial steps (times, levels) in the truth's order, matched by
    their labels: compared by position, a reordered file would score every step against another."""
    for dim in truth.dims:
        if dim in (axes.y, axes.x) or dim not in predicted.dims or dim not in truth.coords or dim not in predicted.coords:
            continue
        wanted, have = truth[dim].values, predicted[dim].values
        if np.array_equal(wanted, have):
            continue
        if wanted.size != have.size or not np.isin(wanted, have).all():
            raise InputError(f"{truth.name!r}: the truth's and the prediction's {dim!r} differ; compare the same steps")
        predicted = predicted.sel({dim: wanted})
    return predicted


def evaluate(
    truth: xr.Dataset, prediction: xr.Dataset, variables: list[str] | None = None, factor: int | None = None
) -> list[dict]:
    """One row of scores per (variable, method): the prediction and, with ``factor``, bicubic
    (on the truth's cells the prediction covers, see :func:`crop_to_prediction`). A truth
    stored across the longitude seam is compared on the longitudes climgen refined it on."""
    truth = aligned_truth(truth, prediction)
    axes = find_spatial_axes(truth)
    names = variables or [name for name in refined_variables(prediction) if name in truth.data_vars]
    if not names:
        raise InputError(
            "no variable to compare: name them (variables=[...] in Python, --variables on the command line); "
            "each must be in both the truth and the prediction"
        )
    # a prediction that matched area-weighted block means is compared with bicubic from them
    provenance = json.loads(prediction.attrs.get("climgen_provenance", "{}"))
    refined_by = provenance.get("factor")
    if factor is not None and refined_by is not None and int(refined_by) != factor:
        raise InputError(
            f"the prediction was refined x{refined_by} (its provenance), but bicubic was asked for at x{factor}: "
            f"compare like with like (--factor {refined_by})"
        )
    areas = area_weights(truth)
    weights = areas if provenance.get("conservation") == "area" else None
    rows = []
    for name in names:
        if name not in truth.data_vars or name not in prediction.data_vars:
            raise InputError(f"variable {name!r} must be in both the truth and the prediction")
        truth_field, predicted = _one_step_matched(truth[name], prediction[name], axes)
        true_values = _values(truth_field, axes)
        predicted = _matched_steps(truth_field, predicted, axes)
        members = None
        if MEMBER_DIM in predicted.dims:
            members = np.stack([_values(predicted.isel({MEMBER_DIM: i}), axes) for i in range(predicted.sizes[MEMBER_DIM])])
            predicted_values = members.mean(axis=0)
        else:
            predicted_values = _values(predicted, axes)
        if predicted_values.shape != true_values.shape:
            raise InputError(f"{name!r}: prediction shape {predicted_values.shape} differs from the truth's {true_values.shape}")
        _check_units(name, truth[name], prediction[name])
        scored_share = _scored_share(name, predicted_values, true_values)
        candidates = [("prediction", predicted_values)]
        if factor is not None:
            candidates.append(("bicubic", bicubic_reference(true_values, check_factor(factor), weights)))
        bounds = physical_bounds(truth[name], name)[0]
        for method, values in candidates:
            row = {"variable": name, "method": method, **metrics.summary(values, true_values)}
            if method == "prediction":
                row["scored_share"] = scored_share  # of the truth's cells with data
            row["rmse_area_weighted"] = metrics.area_weighted_rmse(values, true_values, areas)
            # share of cells outside the variable's physical bounds (None: it has none)
            valid = np.count_nonzero(np.isfinite(values))
            row["outside_bounds"] = None if bounds == (None, None) else count_outside(values, bounds) / max(valid, 1)
            row["spectral_error_per_octave"] = metrics.spectral_error_per_octave(values, true_values)
            if method == "prediction" and members is not None:
                row["members"] = int(members.shape[0])  # the pointwise scores are of their mean
                row["crps"] = metrics.crps(members, true_values)
                row["rank_histogram"] = metrics.rank_histogram(members, true_values).round(4).tolist()
                row["diversity"] = metrics.diversity(members)
                row |= {f"spread_skill_{key}": value for key, value in metrics.spread_skill(members, true_values).items()}
            rows.append(row)
    return rows


def _check_units(name: str, truth: xr.DataArray, prediction: xr.DataArray) -> None:
    """Raise :class:`InputError` when the truth and the prediction state different units."""
    from climgen.io.units import same_units

    stated = [str(values.attrs.get("units", "")).strip() for values in (truth, prediction)]
    if all(stated) and not same_units(*stated):
        raise InputError(
            f"{name!r}: the truth is in {stated[0]!r} and the prediction in {stated[1]!r}; convert one to the other's units"
        )


def _scored_share(name: str, predicted: np.ndarray, truth: np.ndarray) -> float:
    """The share of the truth's cells with data where the prediction has data too (the cells
    every score is over); a warning when it is not all of them, an error when it is none."""
    truth_cells = np.isfinite(truth)
    if not truth_cells.any():
        raise InputError(f"{name!r}: the truth has no values (all missing) on the prediction's cells; nothing to score")
    both = np.count_nonzero(truth_cells & np.isfinite(predicted))
    if both == 0:
        raise InputError(f"{name!r}: the prediction has no values where the truth has data; nothing to score")
    share = both / max(np.count_nonzero(truth_cells), 1)
    if share < 1:
        warn_user(
            f"{name!r}: the prediction has values on {share:.1%} of the truth's cells with data; its scores are over those",
            ClimgenWarning,
        )
    return float(share)


def scores_json(rows: list[dict]) -> str:
    """The rows as strict JSON: scores that are not finite (PSNR of a perfect prediction, a
    score with no cells) become null."""

    def finite(value):
        if isinstance(value, dict):
            return {key: finite(item) for key, item in value.items()}
        if isinstance(value, list):
            return [finite(item) for item in value]
        if isinstance(value, float) and not np.isfinite(value):
            return None
        return value

    return json.dumps(finite(rows), indent=2, allow_nan=False) + "\n"


def format_table(rows: list[dict]) -> str:
    """A markdown table of the main scores, one row per (variable, method)."""
    lines = [
        "| variable | method | RMSE | area-weighted RMSE | bias | MAE | PSNR dB | SSIM | MS-SSIM | top-octave spectral error "
        "| outside physical bounds |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        octaves = row["spectral_error_per_octave"]
        top = f"{list(octaves.values())[-1]:.3f}" if octaves else "n/a"
        ms = "n/a (field <= 160 cells or with missing cells)" if row["ms_ssim"] is None else f"{row['ms_ssim']:.4f}"
        label = row["method"] + (f" (mean of {row['members']} members)" if row.get("members") else "")
        lines.append(
            f"| {row['variable']} | {label} | {row['rmse']:.4g} | {row['rmse_area_weighted']:.4g} | "
            f"{row['bias']:.3g} | {row['mae']:.4g} | "
            f"{row['psnr']:.2f} | {row['ssim']:.4f} | {ms} | {top} | {_share(row.get('outside_bounds'))} |"
        )
    return "\n".join(lines)


def _share(value: float | None) -> str:
    return "n/a (no bounds)" if value is None else f"{100 * value:.1f}%"

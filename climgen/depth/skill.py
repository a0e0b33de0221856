"""Does the model's learned detail help on this input? A self-test on the coarse field itself.

The model was trained on terrain, land fraction and generated fields; a variable it never saw
may get detail that does not belong to it (on global eastward wind at x8 the default model's
detail made errors 4% larger than none at all). Before refining, each variable's coarse field
is coarsened once more by 2 and refined one stage back, where the truth is known: the coarse
field. With ``base`` the projected bicubic of that stage and ``detail`` what the model adds to
it, the squared error of ``base + gain * detail`` is a quadratic in the gain, so the gain that
fits best follows from three sums. It is kept, clipped to 0..1 (detail is never amplified on
the strength of a test one scale coarser), only when it cuts the self-test error by at least
``min_improvement``; otherwise the model's detail is used as trained (gain 1, the same bits as
without the test). The test assumes what the model itself assumes: a field refines alike at
neighbouring scales.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from climgen.noise import stream_seed
from climgen.refine import TileRefiner, fill_nearest
from climgen.regrid import block_mean

TEST_FIELDS = 4  # fields (time steps, members) of a variable tested, evenly spread
CROP = 256  # cells a side of one model call of the test, on the twice-coarsened grid
MIN_CELLS = 4  # the twice-coarsened grid must have at least this many cells a side
# a gain other than 1 must cut the self-test RMSE by at least this share: the test judges a
# scale coarser than the refinement, and a model fine-tuned on temperature showed a 1.9% cut
# there whose gain made the truth's error 0.8% worse (benchmarks/detail_gain.py)
MIN_IMPROVEMENT = 0.03


@dataclass(frozen=True)
class ResidualGain:
    """The share of the model's learned detail kept for one variable, and the test behind it.

    ``optimum`` is the best gain of the test before clipping; ``error_ratio`` the test's RMSE
    with ``gain`` over its RMSE with the full detail; ``note`` says why no test was made.
    """

    gain: float = 1.0
    optimum: float | None = None
    error_ratio: float = 1.0
    fields: int = 0
    cells: int = 0
    note: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def choose_gain(error_sq: float, cross: float, detail_sq: float, min_improvement: float = MIN_IMPROVEMENT) -> ResidualGain:
    """The gain from the test's sums: ``error_sq`` = sum of (base - truth)^2, ``cross`` = sum of
    (base - truth) * detail, ``detail_sq`` = sum of detail^2 over the tested cells."""
    if detail_sq <= 0 or not np.isfinite([error_sq, cross, detail_sq]).all():
        return ResidualGain(note="the model adds no detail here")
    optimum = -cross / detail_sq
    gain = round(float(np.clip(optimum, 0.0, 1.0)), 2)

    def squared(g: float) -> float:
        return max(error_sq + 2 * g * cross + g * g * detail_sq, 0.0)

    full = squared(1.0)
    ratio = float(np.sqrt(squared(gain) / full)) if full > 0 else 1.0
    if 1 - ratio < min_improvement:
        return ResidualGain(optimum=round(float(optimum), 3))
    return ResidualGain(gain=gain, optimum=round(float(optimum), 3), error_ratio=round(ratio, 4))


def self_test(
    refiner: TileRefiner,
    fields: list[np.ndarray],
    covariates: np.ndarray | None = None,
    seed_key: tuple = (0,),
    min_improvement: float = MIN_IMPROVEMENT,
) -> ResidualGain:
    """Test the refiner's model on coarse 2-D ``fields`` of one variable (see the module text).

    ``covariates`` (K, H*f, W*f) are the fine covariates of the run (f the refiner's factor),
    averaged here to the coarse grid. Noise is seeded from ``seed_key``; the result depends
    only on the inputs and the seed.
    """
    torch = refiner.torch
    from climgen.models.generator import bicubic_upsample, project_to_coarse

    sums = np.zeros(3)  # (base - truth)^2, (base - truth) * detail, detail^2
    tested = cells = 0
    coarse_covariates = None if covariates is None else block_mean(np.asarray(covariates, np.float64), refiner.factor)
    generator = torch.Generator().manual_seed(stream_seed(*seed_key, "self-test"))
    for field in fields:
        field = np.asarray(field, dtype=np.float64)
        if field.ndim != 2:
            raise ValueError(f"self_test takes 2-D fields, got shape {field.shape}")
        ny, nx = field.shape[-2] // 2 * 2, field.shape[-1] // 2 * 2
        if min(ny, nx) < 2 * MIN_CELLS or not np.isfinite(field).any():
            continue
        truth = field[:ny, :nx]
        for rows, cols in _crops((ny // 2, nx // 2)):
            part = truth[2 * rows.start : 2 * rows.stop, 2 * cols.start : 2 * cols.stop]
            valid = np.isfinite(part)
            if not valid.any():
                continue
            coarser = block_mean(part, 2)
            coarser_t = torch.as_tensor(fill_nearest(coarser), dtype=torch.float32)[None, None]
            cov = mask = None
            if coarse_covariates is not None:
                values = coarse_covariates[:, 2 * rows.start : 2 * rows.stop, 2 * cols.start : 2 * cols.stop]
                cov = torch.as_tensor(np.nan_to_num(values), dtype=torch.float32)[None]
                mask = torch.as_tensor(np.isfinite(values), dtype=torch.float32)[None]
            noise = [torch.randn((1, 1, *part.shape), generator=generator)]
            with torch.inference_mode():
                moved = [None if t is None else t.to(refiner.device) for t in (coarser_t, cov, mask, *noise)]
                refined = refiner.model(moved[0], moved[1], moved[2], stages=1, noise=moved[3:])[-1]
                base = project_to_coarse(bicubic_upsample(moved[0], 2), moved[0])
            base, refined = (t[0, 0].double().cpu().numpy() for t in (base, refined))
            error, detail = (base - part)[valid], (refined - base)[valid]
            sums += [np.sum(error * error), np.sum(error * detail), np.sum(detail * detail)]
            cells += int(valid.sum())
        tested += 1
    if not cells:
        return ResidualGain(note=f"too small to test (needs {2 * MIN_CELLS} x {2 * MIN_CELLS} coarse cells with data)")
    chosen = choose_gain(*sums, min_improvement=min_improvement)
    return ResidualGain(chosen.gain, chosen.optimum, chosen.error_ratio, tested, cells, chosen.note)


def _crops(shape: tuple[int, int]) -> list[tuple[slice, slice]]:
    """The whole of a small grid; of a larger one, the CROP x CROP windows at its corners."""
    starts = []
    for size in shape:
        if size <= CROP:
            starts.append([0])
        else:
            starts.append(sorted({0, size - CROP}))
    return [(slice(r, min(r + CROP, shape[0])), slice(c, min(c + CROP, shape[1]))) for r in starts[0] for c in starts[1]]


def detail_kept(gains: dict) -> list[str]:
    """A line for each variable whose learned detail is not kept whole (gains as
    :class:`ResidualGain` or its provenance mapping), for summaries and plans."""
    lines = []
    for name, gain in gains.items():
        gain = gain if isinstance(gain, ResidualGain) else ResidualGain(**gain)
        if gain.gain == 1.0:
            continue
        why = (
            "given" if gain.note == "given" else f"self-test error {100 * (1 - gain.error_ratio):.1f}% lower than with all of it"
        )
        lines.append(f"{name}: {gain.gain:g} of the model's learned detail ({why})")
    return lines

"""``climgen benchmark``: the seed paper's comparison, measured on any real field.

The truth is split into a western and an eastern half (along x). The eastern half is coarsened
by ``factor`` and refined by every method; scores are measured against it. With
``pretrained`` the shipped models are used as they are; otherwise each learned method is first
fine-tuned on the western half with the same number of steps. Methods: bicubic, the adaptive
multi-scale generator (AMSGM; also at uniform depth, the adaptivity ablation), the single-scale
GAN and the conditional VAE (x4 only: they jump one fixed factor; they are also the ablation of
the hierarchy), and with ``ablations`` AMSGM trained without multi-branch blocks (3x3 only) and
AMSGM after stage 2 with and without the feedback controller. Fine-tuning (without
``pretrained``) is content-loss fine-tuning for every AMSGM variant.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from climgen import metrics
from climgen.errors import InputError
from climgen.evaluation import bicubic_reference
from climgen.grid import coarsen_dataset, find_spatial_axes
from climgen.io.cf import MEMBER_DIM

COLUMNS = (
    "method",
    "variant",
    "rmse",
    "ssim",
    "detail_ssim",
    "frechet_distance",
    "spectral_error",
    "diversity",
    "diversity_ratio",
    "crps",
    "flops_per_pixel",
    "mpix_per_s",
)
LEARNED = {"amsgm": "default", "gan": "srgan-x4", "vae": "cvae-x4"}
# name -> (shipped checkpoint, row label): the multi-branch recipe with 3x3 convolutions only,
# and stage 2 from the multi-branch generator with and without the feedback controller
ABLATIONS = {
    "amsgm-3x3": ("amsgm-3x3", "3x3 blocks only"),
    "amsgm-stage2": ("amsgm-stage2", "stage 2, feedback controller"),
    "amsgm-stage2-fixed": ("amsgm-stage2-fixed", "stage 2, fixed weights"),
}
NOT_RUN: list[str] = []


@dataclass(frozen=True)
class BenchmarkOptions:
    """What to compare and how hard to try."""

    factor: int = 4
    members: int = 4
    pretrained: bool = False
    quick: bool = False
    seed: int = 0
    steps: int | None = None  # fine-tuning steps (default: 60 with quick, else 300)
    ablations: bool = False  # also AMSGM without multi-branch blocks (hierarchy: see the GAN and VAE)

    @property
    def finetune_steps(self) -> int:
        return self.steps or (60 if self.quick else 300)

    def check(self) -> None:
        """Refuse, before any fine-tuning, what the runs would refuse after it: the factor,
        members and seed by the refinement's own rules, and fewer than 2 members."""
        from climgen.errors import ConfigError
        from climgen.pipeline import make_config

        make_config(factor=self.factor, members=self.members, seed=self.seed)
        if self.members < 2:
            raise ConfigError(f"members must be at least 2 (the samples scored for diversity and CRPS), got {self.members}")
        if self.steps is not None and self.steps < 1:
            raise ConfigError(f"steps must be at least 1, got {self.steps}")


def fine_values(ds: xr.Dataset, variable: str) -> np.ndarray:
    """(N, y, x) float64 values of a variable (leading dimensions flattened)."""
    axes = find_spatial_axes(ds)
    values = ds[variable].transpose(..., axes.y, axes.x).values.astype(np.float64)
    return values.reshape(-1, *values.shape[-2:])


def score(
    method: str, members: np.ndarray, truth: np.ndarray, reference: np.ndarray, seconds: float, macs: float, variant: str = ""
) -> dict:
    """One benchmark row: member 0's scores against the truth, and the ensemble's (one member:
    diversity 0 and CRPS the MAE). ``reference`` is bicubic interpolation, the zero of the
    detail SSIM; ``seconds`` and ``macs`` are those of one member."""
    first = members[0]
    return {
        "method": method,
        "variant": variant,
        "rmse": metrics.rmse(first, truth),
        "ssim": float(np.mean([metrics.ssim(p, t) for p, t in zip(first, truth, strict=True)])),
        "detail_ssim": float(np.mean([metrics.detail_ssim(p, t, r) for p, t, r in zip(first, truth, reference, strict=True)])),
        "ms_ssim": metrics.ms_ssim(first, truth),
        "frechet_distance": metrics.frechet_distance(first, truth),
        # the top octave's (0.25-0.5 cycles per cell); none where the truth has no power there (a constant field)
        "spectral_error": metrics.spectral_error_per_octave(first, truth).get("0.25-0.5"),
        "diversity": metrics.diversity(members),
        "diversity_ratio": metrics.diversity_ratio(members, truth) if len(members) > 1 else 0.0,
        "crps": metrics.crps(members, truth),
        "flops_per_pixel": 2 * macs / truth.size,
        "mpix_per_s": truth.size / seconds / 1e6 if seconds > 0 else None,
    }


FRECHET_PATCHES = 20
"""Patches of 16 x 16 cells (stride 8) the Frechet distance needs (:func:`climgen.metrics.frechet_distance`)."""


def halves(truth: xr.Dataset) -> tuple[xr.Dataset, xr.Dataset]:
    """Western and eastern halves along x, each trimmed to whole multiples of 16 cells; the
    eastern half, which is scored, must give the Frechet distance its patches."""
    axes = find_spatial_axes(truth)
    middle = truth.sizes[axes.x] // 2
    parts = []
    for part in (truth.isel({axes.x: slice(0, middle)}), truth.isel({axes.x: slice(middle, None)})):
        parts.append(
            part.isel({axes.y: slice(0, part.sizes[axes.y] // 16 * 16), axes.x: slice(0, part.sizes[axes.x] // 16 * 16)})
        )
    if min(min(part.sizes[axes.y], part.sizes[axes.x]) for part in parts) < 32:
        raise InputError(
            f"the truth is too small to split: each half needs at least 32 x 32 cells (the truth at least 32 x 64), got {dict(truth.sizes)}"
        )
    east = parts[1]
    for name in east.data_vars:
        values = np.asarray(east[name].values, dtype=np.float64)
        if np.isinf(values).any():
            raise InputError(f"the truth's {name!r} holds infinite values: mark them missing first (ds.where(np.isfinite(ds)))")
        if not np.isfinite(values).any():
            raise InputError(f"the truth's {name!r} has no values in its eastern half, where the methods are scored")
    fields = int(np.prod([east.sizes[dim] for name in east.data_vars for dim in east[name].dims if dim not in (axes.y, axes.x)]))
    patches = fields * ((east.sizes[axes.y] - 16) // 8 + 1) * ((east.sizes[axes.x] - 16) // 8 + 1)
    if patches < FRECHET_PATCHES:
        raise InputError(
            f"the truth is too small to score: its eastern half gives {patches} patches of 16 x 16 cells for the Frechet "
            f"distance, which needs {FRECHET_PATCHES}; give at least 48 x 96 cells, or more time steps, got {dict(truth.sizes)}"
        )
    return parts[0], parts[1]


def finetune(method: str, west: xr.Dataset, variable: str, options: BenchmarkOptions, folder: Path, log) -> str:
    """Fine-tune a shipped model on the western half; returns the new checkpoint's path."""
    from climgen.training.recipe import TrainRecipe
    from climgen.training.run import train

    source = folder / "west.nc"
    if not source.exists():
        west[[variable]].to_netcdf(source)
    document = {
        "name": f"{method}-benchmark",
        "seed": options.seed,
        "device": "auto",
        "output": str(folder / method),
        "init_from": {**LEARNED, **{name: shipped for name, (shipped, _) in ABLATIONS.items()}}[method],
        "data": {"crop_size": 32, "real_fraction": 1.0, "real_fields": [{"path": str(source), "variable": variable}]},
    }
    if method.startswith("amsgm"):
        stages = min(2, options.factor.bit_length() - 1)
        document["pretrain"] = {"steps": options.finetune_steps, "batch_size": 8, "learning_rate": 2e-4, "max_stages": stages}
        document["pretrain"] |= {"validate_every": options.finetune_steps, "checkpoint_every": options.finetune_steps}
    else:
        kind = LEARNED[method].split("-")[0]
        document["baseline"] = {"kind": kind, "factor": 4, "steps": options.finetune_steps, "batch_size": 8}
        document["baseline"] |= {"learning_rate": 2e-4, "validate_every": options.finetune_steps}
    recipe = TrainRecipe(**document, base_dir=folder)
    log(f"fine-tuning {method} on the western half: {options.finetune_steps} steps")
    return str(train(recipe, log=lambda message: None, overwrite=True))


def run_benchmark(truth: xr.Dataset, variable: str, out: str | Path, options: BenchmarkOptions, log=print) -> list[dict]:
    """Compare the methods on ``truth[variable]``; writes benchmark.json, benchmark.md and
    spectra.png under ``out`` and returns the rows."""
    from climgen.io.write import check_folder
    from climgen.pipeline import synthesize

    if variable not in truth.data_vars:
        raise InputError(f"variable {variable!r} not in the truth; it has {sorted(truth.data_vars)}")
    axes = find_spatial_axes(truth)
    if not {axes.y, axes.x} <= set(truth[variable].dims):
        raise InputError(f"variable {variable!r} does not span the spatial dimensions ({axes.y}, {axes.x})")
    options.check()  # before any folder or fine-tuning
    west, east = halves(truth[[variable]].assign_coords(truth.coords))
    if not options.pretrained and options.factor == 4 and bool(west[variable].isnull().any()):
        share = float(west[variable].isnull().mean())
        raise InputError(
            f"the GAN and VAE baselines fine-tune only on fields without missing cells, and the truth's western half has "
            f"{share:.0%} missing: give a region without them, or compare the shipped models with --pretrained"
        )
    out = check_folder(out)
    coarse = coarsen_dataset(east, options.factor)
    expected = fine_values(east, variable)
    bicubic_reference(expected[:1], options.factor)  # warm up (imports), so the timing is the work
    started = time.perf_counter()
    reference = bicubic_reference(expected, options.factor)
    rows = [score("bicubic", reference[None], expected, reference, time.perf_counter() - started, 0.0)]
    curves = {"truth": expected, "bicubic": reference}
    methods = dict(LEARNED) if options.factor == 4 else {"amsgm": "default"}
    if options.ablations:
        methods |= {name: shipped for name, (shipped, _) in ABLATIONS.items()}
    with tempfile.TemporaryDirectory(prefix="climgen-benchmark-") as scratch:
        for method, model in methods.items():
            if not options.pretrained:
                model = finetune(method, west, variable, options, Path(scratch), log)
            for variant, adaptive, members in method_variants(method, model, options.members):
                log(f"refining with {method} {variant}".rstrip())
                axes = find_spatial_axes(coarse)
                warm_up = coarse.isel({axes.y: slice(0, 8), axes.x: slice(0, 8)})
                synthesize(warm_up, factor=options.factor, seed=options.seed, model=model, adaptive=adaptive)  # load the model
                started = time.perf_counter()
                result = synthesize(
                    coarse, factor=options.factor, seed=options.seed, model=model, adaptive=adaptive, members=members
                )
                seconds = (time.perf_counter() - started) / members
                fields = [result.isel({MEMBER_DIM: m}) for m in range(members)] if members > 1 else [result]
                values = np.stack([fine_values(field, variable) for field in fields])
                macs = json.loads(result.attrs["climgen_provenance"])["compute"]["macs"] / members
                rows.append(score(method.split("-")[0], values, expected, reference, seconds, macs, variant))
                curves[f"{method} {variant}".strip()] = values[0]
    notes = {
        "variable": variable,
        "factor": options.factor,
        "members": options.members,
        "pretrained": options.pretrained,
        "finetune_steps": None if options.pretrained else options.finetune_steps,
        "evaluated_on": f"eastern half {dict(east.sizes)}",
        "not_run": NOT_RUN
        + ([] if options.factor == 4 else ["gan and vae: the shipped baselines refine by x4 only"])
        + ([] if options.ablations else ["ablations (pass --ablations): 3x3 blocks only; stage 2 with and without feedback"]),
    }
    (out / "benchmark.json").write_text(json.dumps({"rows": rows, **notes}, indent=2) + "\n")
    (out / "benchmark.md").write_text(format_markdown(rows, notes))
    _plot_spectra(curves, out / "spectra.png", variable)
    return rows


def method_variants(method: str, model: str, members: int) -> list[tuple[str, bool, int]]:
    """(row label, adaptive depth, members) of each row a method gets: a model that gives a
    best estimate without noise gets it at default and uniform depth, and its samples; one
    whose every output is a sample (the GAN, the VAE, the older models) gets its members."""
    from climgen.models.checkpoint import load_checkpoint

    if method in ABLATIONS:
        return [(ABLATIONS[method][1], True, members)]
    if not method.startswith("amsgm"):
        return [("", False, members)]
    if getattr(load_checkpoint(model).module, "best_estimate_without_noise", False):
        return [("best estimate", True, 1), ("best estimate, uniform depth", False, 1), (f"{members} samples", True, members)]
    return [("adaptive", True, members), ("uniform depth", False, members)]


def format_markdown(rows: list[dict], notes: dict) -> str:
    """The rows as a markdown table, with what was compared and what was not run."""

    def cell(value) -> str:
        if value is None or value == "":
            return "-"
        return f"{value:.4g}" if isinstance(value, float) else str(value)

    how = "as shipped" if notes["pretrained"] else f"fine-tuned for {notes['finetune_steps']} steps on the western half"
    lines = [
        f"# Benchmark: {notes['variable']}, x{notes['factor']}, {notes['evaluated_on']}",
        "",
        f"Models {how}; {notes['members']} ensemble members; scores of member 0 except diversity, diversity ratio and "
        "CRPS. SSIM of the fields and of their detail beyond bicubic interpolation (`detail_ssim`: low for bicubic, 1 for "
        "the truth); diversity ratio: members' distance to each other over their distance to the truth (1: the truth "
        "could be a member; 0: copies); diversity: the members' mean distance to each other, and CRPS (fair) and RMSE, "
        "in the variable's units; spectral error: mean |log10| of the power ratio to the truth's in the top octave "
        "(0.25-0.5 cycles per cell; 0.3 is a factor of 2); Frechet distance: between the distributions of 16 x 16 patch "
        "features of member 0 and the truth (lower is closer); FLOPs per pixel and MPix/s: of one member.",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    lines += ["| " + " | ".join(cell(row[column]) for column in COLUMNS) + " |" for row in rows]
    lines += ["", "Not run:"] + [f"- {item}" for item in notes["not_run"]]
    return "\n".join(lines) + "\n"


def _plot_spectra(curves: dict[str, np.ndarray], path: Path, variable: str) -> None:
    from matplotlib.figure import Figure  # not pyplot: a notebook's backend and figures are left alone

    figure = Figure(figsize=(7, 4.5), layout="constrained")
    axis = figure.subplots()
    for label, values in curves.items():
        k, power = metrics.power_spectrum(values)
        axis.loglog(k, power, label=label, color="k" if label == "truth" else None)
    axis.set_xlabel("wavenumber (cycles per fine cell)")
    axis.set_ylabel("power")
    axis.set_title(f"{variable}: radially averaged power spectra")
    axis.legend()
    figure.savefig(path, dpi=110)

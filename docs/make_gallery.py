"""Draw the gallery (docs/gallery.md's pictures) from held-out real fields, offline.

Each field is one the default model never saw in training
(:func:`climgen.training.corpus.held_out_fields`). It is coarsened by 4 with block means and
refined back; the pictures show the coarse input, the best estimate, the truth, the spread of
8 members, the power spectra, and the complexity, predicted-gain and depth maps.

    python docs/make_gallery.py --shared ../shared          # docs/images/gallery-*.png, overview.png
    python docs/make_gallery.py --shared ../shared --out DIR
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import xarray as xr

import climgen  # noqa: F401  (registers the .climgen accessor)
from climgen.evaluation import bicubic_reference
from climgen.grid import coarsen_dataset
from climgen.metrics import power_spectrum
from climgen.training.corpus import held_out_fields

FACTOR = 4
MEMBERS = 8
SEED = 1
FIELDS = (  # (name in held_out_fields, label, colour map)
    ("ETOPO5 relief lat+30_lon000", "relief, the Alps and the Mediterranean (m)", "terrain"),
    ("Levitus ocean temperature", "Levitus sea temperature (degC)", "RdYlBu_r"),
    ("COADS sea-level pressure", "COADS sea-level pressure (hPa)", "viridis"),
    ("NCL surface height", "regional surface height, east Africa (m)", "terrain"),
)


def _pick(fields, prefix: str):
    for held_out in fields:
        if held_out.name.startswith(prefix):
            return held_out
    raise SystemExit(f"no held-out field starts with {prefix!r}: {[f.name for f in fields]}")


def _even(data: xr.Dataset, variable: str) -> xr.Dataset:
    """The truth cut to whole coarse blocks, with one time step at most."""
    y_dim, x_dim = data[variable].dims[-2:]
    data = data.isel({dim: 0 for dim in data[variable].dims[:-2]})
    return data.isel(
        {y_dim: slice(0, data.sizes[y_dim] // FACTOR * FACTOR), x_dim: slice(0, data.sizes[x_dim] // FACTOR * FACTOR)}
    )


def refine_field(held_out) -> dict[str, np.ndarray]:
    """Coarse input, best estimate, members, maps and truth of one held-out field."""
    truth = _even(held_out.truth, held_out.variable)
    coarse = coarsen_dataset(truth, FACTOR)
    best = coarse.climgen.synthesize(factor=FACTOR, seed=SEED)
    ensemble = coarse.climgen.synthesize(factor=FACTOR, seed=SEED, members=MEMBERS)
    values = truth[held_out.variable].values
    return {
        "truth": values,
        "coarse": coarse[held_out.variable].values,
        "best": best[held_out.variable].values,
        "members": ensemble[held_out.variable].values,
        "bicubic": bicubic_reference(values, FACTOR),
        "complexity": best["complexity_score"].values,
        "gain": best["predicted_gain"].values,
        "depth": best["refinement_depth"].values,
    }


def draw_fields(results, labels, cmaps, path: Path) -> None:
    """One row per field: coarse input, best estimate, truth, ensemble spread."""
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(len(results), 4, figsize=(16, 3.6 * len(results)), layout="constrained", squeeze=False)
    for row, (result, label, cmap) in enumerate(zip(results, labels, cmaps, strict=True)):
        finite = result["truth"][np.isfinite(result["truth"])]
        limits = dict(vmin=np.percentile(finite, 1), vmax=np.percentile(finite, 99), cmap=cmap)
        spread = np.nanstd(result["members"], axis=0)
        panels = [
            (result["coarse"], f"coarse input (x{FACTOR} block means)", limits),
            (result["best"], "best estimate (members=1)", limits),
            (result["truth"], "truth (never seen in training)", limits),
            (spread, f"spread of {MEMBERS} members", dict(cmap="magma")),
        ]
        for column, (values, title, style) in enumerate(panels):
            axis = axes[row, column]
            image = axis.imshow(values, origin="lower", interpolation="nearest", **style)
            axis.set_title(title, fontsize=9)
            axis.set_xticks([])
            axis.set_yticks([])
            figure.colorbar(image, ax=axis, shrink=0.8)
        axes[row, 0].set_ylabel(label, fontsize=9)
    figure.savefig(path, dpi=90)
    plt.close(figure)


def draw_spectra(results, labels, path: Path) -> None:
    """Power spectra of the truth, bicubic, the best estimate and one member, per field."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    figure, axes = plt.subplots(1, len(results), figsize=(4.2 * len(results), 3.6), layout="constrained")
    for axis, result, label in zip(axes, results, labels, strict=True):
        curves = {
            "truth": result["truth"],
            "bicubic": result["bicubic"],
            "best estimate": result["best"],
            "one member": result["members"][0],
        }
        for name, values in curves.items():
            filled = np.where(np.isfinite(values), values, np.nanmean(values))
            wavenumber, power = power_spectrum(filled)
            axis.loglog(wavenumber[1:], power[1:], label=name, lw=1.2, ls="--" if name == "bicubic" else "-")
        axis.axvline(0.5 / FACTOR, color="0.6", lw=0.8)
        axis.set_title(label, fontsize=9)
        axis.set_xlabel("wavenumber (cycles per fine cell)")
        axis.xaxis.set_minor_formatter(NullFormatter())
    axes[0].set_ylabel("power")
    axes[0].legend(fontsize=8)
    figure.savefig(path, dpi=90)
    plt.close(figure)


def draw_maps(result, label: str, path: Path) -> None:
    """Complexity, predicted gain and chosen depth of one field."""
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 4, figsize=(16, 3.6), layout="constrained")
    panels = [
        (result["truth"], f"{label}: truth", dict(cmap="terrain")),
        (result["complexity"], "complexity score (explanation)", dict(cmap="viridis")),
        (result["gain"], "predicted gain of the next stage", dict(cmap="magma")),
        (result["depth"], "refinement depth (stages)", dict(cmap="Blues", vmin=0, vmax=FACTOR.bit_length() - 1)),
    ]
    for axis, (values, title, style) in zip(axes, panels, strict=True):
        image = axis.imshow(values, origin="lower", interpolation="nearest", **style)
        axis.set_title(title, fontsize=9)
        axis.set_xticks([])
        axis.set_yticks([])
        figure.colorbar(image, ax=axis, shrink=0.8)
    figure.savefig(path, dpi=90)
    plt.close(figure)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", default="../shared", help="the shared folder with data/corpus and data/ncl")
    parser.add_argument("--out", default=str(Path(__file__).parent / "images"))
    args = parser.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    fields = held_out_fields(Path(args.shared) / "data")
    chosen = [_pick(fields, prefix) for prefix, _, _ in FIELDS]
    results = [refine_field(held_out) for held_out in chosen]
    labels = [label for _, label, _ in FIELDS]
    draw_fields(results, labels, [cmap for _, _, cmap in FIELDS], out / "gallery-fields.png")
    draw_fields(results[:1], labels[:1], [FIELDS[0][2]], out / "overview.png")  # the README's picture
    draw_spectra(results, labels, out / "gallery-spectra.png")
    draw_maps(results[0], "relief", out / "gallery-maps.png")
    print(f"wrote {out}/gallery-fields.png, gallery-spectra.png, gallery-maps.png, overview.png")


if __name__ == "__main__":
    main()

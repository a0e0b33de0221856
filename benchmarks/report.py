"""Every current figure of docs/benchmarks.md, from one command (``make benchmarks``).

Runs each benchmark of this folder on the held-out real fields, keeps the tables it prints,
and writes docs/benchmarks.md (and the figures in docs/images). Each section's output is also
kept in ``build/benchmarks/<section>.md``, so one section can be run again alone (``--only``)
and the page is assembled from the latest run of every section.

    python benchmarks/report.py --shared ../shared            # everything (about 25 minutes on 2 cores, 13 of them training sizes)
    python benchmarks/report.py --shared ../shared --quick    # a smaller run of each (minutes), in build/
    python benchmarks/report.py --shared ../shared --only speed ensembles
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
IMAGES = ROOT / "docs" / "images"


@dataclass(frozen=True)
class Section:
    """One benchmark command and what its tables say."""

    key: str
    title: str
    about: str
    command: tuple[str, ...]
    quick: tuple[str, ...] = ()
    shared: bool = True


SECTIONS = (
    Section(
        "depth",
        "Quality and the depth policy",
        "Each held-out real field is coarsened by block means, refined at uniform full depth and "
        "at the default depth, and compared with the truth. The policy's constants are fitted with "
        "the field left out (leave one field out); the oracle takes, per tile, the depth the truth "
        "says pays most per multiply-accumulate at the same cost.\n\n"
        "![predicted gain, realised gain, chosen and oracle depth](images/gain-and-depth.png)",
        ("depth_policy.py", "--figure", str(IMAGES / "gain-and-depth.png")),
        ("--quick",),
    ),
    Section(
        "ensembles",
        "Best estimate and ensembles",
        "The default model's best estimate (members=1) and 8 members drawn from its per-stage "
        "noise, on every held-out field (best estimate at default depth, members at full depth). Spread/skill near 1 means calibrated "
        "members; CRPS below the best estimate's MAE means the members carry information the single field does not (it "
        "holds on every field, calibrated or not). The last column compares how steep the "
        "members are with the truth: the 99.9th percentile of the jumps between neighbouring cells, "
        "members' over the truth's (above 1: single-cell jumps steeper than the real field's).\n\n"
        "![rank histograms of the held-out truth among 8 members](images/rank-histograms.png)",
        (
            "ensemble_scores.py",
            "--factors",
            "4",
            "8",
            "--members",
            "8",
            "--figure",
            str(IMAGES / "rank-histograms.png"),
        ),
        ("--quick",),
    ),
    Section(
        "spread",
        "Calibrating the members' spread",
        "Each stage's sample head learns its own spread, and a chain of stages adds them up; the "
        "drawn detail is scaled by the chain's length (the checkpoint's `sample_scale`). For each "
        "factor, 8 members of every held-out field are scored at scales 0.6 .. 1.2; the scale is the "
        "one whose spread / skill is closest to a calibrated ensemble's, sqrt(8/9) = 0.94, in mean "
        "squared log, fitted with each field left out and reported on it.",
        ("spread_calibration.py", "--scales", "0.6", "0.7", "0.8", "0.9", "1.0", "1.1", "1.2"),
        ("--quick", "--factors", "4", "--scales", "0.8", "1.0"),
    ),
    Section(
        "methods",
        "The seed paper's comparison",
        "AMSGM (best estimate and samples) against the single-scale GAN, the conditional VAE and "
        "bicubic on the held-out fields. SSIM is of the detail beyond bicubic (data range: the "
        "truth detail's standard deviation), so it separates methods. The methods are compared "
        "as shipped, not at equal training: the GAN and the VAE trained 3,500 steps on generated "
        "fields and the western halves of two NCL fields (`recipes/train-baseline-*.yaml`), the "
        "default generator 30,000 steps on the whole corpus.",
        ("methods_comparison.py",),
        ("--quick",),
    ),
    Section(
        "covariates",
        "What a covariate is worth",
        "climgen with and without a fine elevation covariate, against the truth.",
        ("covariate_value.py", "--factors", "4"),
    ),
    Section(
        "sizes",
        "Model size against quality and speed",
        "The default recipe trained at several sizes (channels x residual blocks) for the same "
        "number of steps, judged at x4 and uniform depth on the held-out fields, and timed on the "
        "speed benchmark's 1024 x 1024 output (in the precision climgen takes by default on the "
        "machine); the shipped models for reference. Trained sizes are kept in `build/sizes` and "
        "reused: the time below is of a run that found them there (a first run trains each).",
        ("model_sizes.py", "--sizes", "16x4", "24x4", "32x4", "--steps", "2000"),
        ("--sizes", "16x4", "24x4", "--steps", "200"),
    ),
    Section(
        "speed",
        "Speed on 2 CPU cores",
        "Output megapixels per second on a 1024 x 1024 output of a heterogeneous real domain "
        "(a mosaic of a held-out orography), the default model against the previous one "
        "(amsgm-multibranch), at default and uniform depth; in bf16 where the CPU computes it "
        "natively (what precision auto takes there) and in float32.",
        ("inference_speed.py", "--repeats", "3", "--interleaved", "21"),
        ("--size", "256", "--repeats", "1", "--interleaved", "3"),
    ),
    Section(
        "speed-previous",
        "Speed of the previous default (amsgm-multibranch)",
        "The same run with the previous default model, for comparison.",
        ("inference_speed.py", "--repeats", "3", "--model", "amsgm-multibranch"),
        ("--size", "256", "--repeats", "1", "--model", "amsgm-multibranch"),
    ),
)


def tables_of(output: str) -> str:
    """The markdown tables a benchmark printed, each with its caption (a paragraph of its own
    just above it), and its summary sentences; not its progress lines."""
    lines = output.splitlines()
    kept: list[str] = []
    for index, line in enumerate(lines):
        if not line.strip():
            if kept and kept[-1]:
                kept.append("")
            continue
        table = line.startswith("|")
        following = next((later for later in lines[index + 1 :] if later.strip()), "")
        caption = not table and (index == 0 or not lines[index - 1].strip()) and following.startswith("|")
        summary = line.startswith(("fitted on", "Spearman", "stage ", "machine: ")) or line.endswith("s in all")
        if table or caption or summary:
            new_table = table and following.startswith("|--")  # a header row: a table of its own
            if kept and kept[-1] and (table != kept[-1].startswith("|") or new_table):
                kept.append("")
            kept.append(line)
    return "\n".join(kept).strip()


def run_section(section: Section, shared: str, quick: bool, store: Path, shared_shown: str = "../shared") -> Path:
    """Run one benchmark; write its tables to ``store/<key>.md`` and return that path."""
    store.mkdir(parents=True, exist_ok=True)
    arguments = list(section.command) + (["--shared", shared] if section.shared else [])
    if quick:  # a quick run's figures stay beside its tables, not in the docs
        arguments = [str(store / Path(arg).name) if arg.startswith(str(IMAGES)) else arg for arg in arguments]
        arguments += list(section.quick)
    started = time.perf_counter()
    print(f"[{section.key}] python benchmarks/{' '.join(arguments)}", flush=True)
    done = subprocess.run([sys.executable, str(HERE / arguments[0]), *arguments[1:]], cwd=HERE, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode:
        sys.stderr.write(done.stdout[-4000:] + done.stderr[-4000:])
        raise SystemExit(f"[{section.key}] failed with exit status {done.returncode}")
    shown = " ".join(
        shared_shown if arg == shared else str(Path(arg).relative_to(ROOT)) if arg.startswith(str(ROOT)) else arg
        for arg in arguments
    )
    text = (
        f"## {section.title}\n\n{section.about}\n\n`python benchmarks/{shown}`"
        f"{' (quick mode)' if quick else ''}, {seconds:.0f} s on {os.cpu_count()} CPU cores:\n\n{tables_of(done.stdout)}\n"
    )
    path = store / f"{section.key}.md"
    path.write_text(text)
    print(f"[{section.key}] {seconds:.0f} s", flush=True)
    return path


def assemble(store: Path, page: Path) -> None:
    """docs/benchmarks.md from the latest output of every section."""
    parts = [
        "# Benchmarks\n",
        "Every figure on this page comes from `make benchmarks` (`python benchmarks/report.py`), "
        "on real fields the default model never trained on "
        "(`climgen.training.corpus.held_out_fields`). Each truth is coarsened by block means, "
        "refined and compared with the truth; RMSE is given as a ratio to bicubic's from the same "
        "coarse field. Held out means the files: the corpus is split by file and by region "
        "within a file, not by place across files, so some held-out terrain was seen in another "
        "source (the training ETOPO5 tiles lat-30_lon030 and lat-60_lon030 cover 33-37% of the "
        "cells, 13-14% of the land, of the held-out halves of the NCL orographies; 25% of the "
        "held-out tile relief_lat+30_lon000 lies under the trained western half of orog_mod3). "
        "The members' `sample_scale` was fitted on these same fields (with each left out it "
        "gives the same counts, below). Earlier figures and what changed them are in the "
        "changelog; experiments not kept are in [What we tried](what-we-tried.md).\n",
    ]
    for section in SECTIONS:
        path = store / f"{section.key}.md"
        parts.append(path.read_text() if path.is_file() else f"## {section.title}\n\nNot run yet.\n")
    page.write_text("\n".join(parts))


README_BEGIN = "<!-- results table: written by benchmarks/report.py -->"
README_END = "<!-- end of results table -->"


def readme_table(store: Path, readme: Path) -> None:
    """Put the depth section's per-field quality table between the README's markers."""
    path = store / "depth.md"
    text = readme.read_text()
    if not path.is_file() or README_BEGIN not in text or README_END not in text:
        return
    blocks = [block for block in path.read_text().split("\n\n") if block.startswith("| held-out field |")]
    if blocks:
        head, rest = text.split(README_BEGIN)
        _, tail = rest.split(README_END)
        readme.write_text(f"{head}{README_BEGIN}\n{blocks[-1].strip()}\n{README_END}{tail}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", default="../shared", help="the shared folder (data/corpus, data/ncl)")
    parser.add_argument("--quick", action="store_true", help="a smaller run of each benchmark")
    parser.add_argument("--only", nargs="+", choices=[section.key for section in SECTIONS], help="run these sections")
    parser.add_argument("--store", help="where each section's tables are kept (build/benchmarks, quick: build/benchmarks-quick)")
    parser.add_argument("--page", help="the page written (docs/benchmarks.md; quick: build/benchmarks-quick/benchmarks.md)")
    args = parser.parse_args(argv)
    store = Path(args.store or ROOT / "build" / ("benchmarks-quick" if args.quick else "benchmarks"))
    args.page = args.page or str(store / "benchmarks.md" if args.quick else ROOT / "docs" / "benchmarks.md")
    shared = str(Path(args.shared).resolve())
    for section in SECTIONS:
        if args.only is None or section.key in args.only:
            run_section(section, shared, args.quick, store, args.shared)
    assemble(store, Path(args.page))
    if not args.quick:  # the README shows full runs only
        readme_table(store, ROOT / "README.md")
    print(f"wrote {args.page}")


if __name__ == "__main__":
    main()

"""climgen's GPU figures in one prepared run: the raw generator, the whole refinement, training.

Written to run once on a lent device in under 8 minutes and to leave one JSON and one markdown
table behind, whatever fails on the way (each measurement is recorded as it finishes, and a
mode that does not work there, say CUDA graphs, is recorded as failed with its error):

- **generator**: the default model alone on batches of windows at x4 and x8, float32 and
  bfloat16, eager, ``torch.compile`` and CUDA graphs (``mode="reduce-overhead"``), windows
  and batch sizes swept; output MPix/s and peak device memory per row;
- **accuracy**: the held-out terrain mosaic refined at uniform depth in float32 and bfloat16
  on the device, RMSE against the truth of each; float32 on the device against the CPU;
  the same seed twice (bit-identical or not);
- **refinement**: ``climgen.streaming.run`` zarr to zarr (4096^2 output at x4) at default
  depth and at uniform depth, and the share of time in each step of the same refinement done
  step by step: read, plan (scores and predicted gain), model, blend (the rest of the tile
  refinement), write;
- **training**: steps per second of the default recipe's pre-training (generated fields only
  when ``shared/`` is not beside the checkout).

The data are the terrain sample that ships in the package (``climgen/data``), mirrored into a
mosaic, so the run needs nothing beside the checkout. ``--device cpu --quick`` runs every
section small on 2 cores in under a minute (the test suite does).

    python benchmarks/gpu_suite.py --device cuda --out gpu-results/
    python benchmarks/gpu_suite.py --device cpu --quick --out /tmp/gpu-suite
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import torch
import xarray as xr

import climgen
from climgen.models.checkpoint import load_checkpoint
from climgen.pipeline import make_config, plan
from climgen.refine import TileRefiner, refine_domain

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "climgen" / "data" / "africa_orography_0.44deg.nc"


def synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(run, device: torch.device, repeats: int, warmups: int = 1) -> float:
    """Median wall seconds of ``run()`` after ``warmups`` runs (compiled modes record their
    graphs over the first calls)."""
    for _ in range(warmups):
        run()
    seconds = []
    for _ in range(repeats):
        synchronise(device)
        started = time.perf_counter()
        run()
        synchronise(device)
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds)


def peak_memory_mib(device: torch.device) -> float:
    """Peak device memory since the last reset (CUDA), or the process's peak resident memory."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def mosaic(size: int, factor: int) -> tuple[xr.Dataset, np.ndarray]:
    """The packaged terrain mirrored to (size * factor)^2 fine cells (the truth) and its block
    means on a 12 km y/x grid (the coarse input)."""
    with xr.open_dataset(SAMPLE) as ds:
        fine = np.asarray(ds["orog"].values, dtype=np.float64)
    fine = fine[: fine.shape[0] // factor * factor, : fine.shape[1] // factor * factor]
    side = size * factor
    while min(fine.shape) < side:
        fine = np.block([[fine, fine[:, ::-1]], [fine[::-1], fine[::-1, ::-1]]])
    truth = fine[:side, :side]
    coarse = truth.reshape(size, factor, size, factor).mean(axis=(1, 3))
    axes = {
        name: xr.DataArray(
            np.arange(size) * 12_000.0, dims=name, attrs={"standard_name": f"projection_{name}_coordinate", "units": "m"}
        )
        for name in ("y", "x")
    }
    attrs = {"standard_name": "surface_altitude", "units": "m"}
    return xr.Dataset({"orog": (("y", "x"), coarse.astype(np.float32), attrs)}, coords=axes), truth


class Recorder:
    """Rows of every section, written to JSON and markdown after each row (a run cut short
    keeps what it measured)."""

    def __init__(self, out: Path, device: torch.device, quick: bool):
        self.out = out
        out.mkdir(parents=True, exist_ok=True)
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
        self.document = {
            "device": name,
            "torch": torch.__version__,
            "climgen": climgen.__version__,
            "quick": quick,
            "sections": {},
        }

    def add(self, section: str, row: dict) -> None:
        self.document["sections"].setdefault(section, []).append(row)
        print(section, json.dumps(row), flush=True)
        (self.out / "gpu_suite.json").write_text(json.dumps(self.document, indent=1))
        (self.out / "gpu_suite.md").write_text(self.markdown())

    def markdown(self) -> str:
        lines = [f"# climgen GPU suite on {self.document['device']} (torch {self.document['torch']})", ""]
        for section, rows in self.document["sections"].items():
            keys = list(dict.fromkeys(key for row in rows for key in row))
            lines += [f"## {section}", "", "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
            lines += ["| " + " | ".join(_cell(row.get(key, "")) for key in keys) + " |" for row in rows]
            lines.append("")
        return "\n".join(lines)


def _cell(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def generator_cases(quick: bool, on_gpu: bool) -> list[tuple]:
    """(factor, precision, mode, window, batch): eager over every window and batch size; the
    compiled modes (one compile per shape) at one window and batch, where they can work."""
    windows, batches = ((16,), (2,)) if quick else ((64, 128), (8, 32, 128))
    cases = []
    for factor in (4, 8):
        for precision in ("float32", "bfloat16"):
            cases += [(factor, precision, "eager", window, batch) for window in windows for batch in batches]
            if on_gpu and not quick:
                cases += [(factor, precision, mode, 128, 32) for mode in ("compile", "cudagraphs")]
    return cases


def generator_row(model, device: torch.device, case: tuple, repeats: int) -> dict:
    """One generator measurement: output MPix/s and peak memory of batches of windows."""
    factor, precision, mode, window, batch = case
    stages = factor.bit_length() - 1
    forward = model
    if mode != "eager":
        torch._dynamo.reset()  # each case compiles afresh, never past dynamo's recompile limit
        forward = torch.compile(model, dynamic=False, mode="reduce-overhead" if mode == "cudagraphs" else None)
    generator = torch.Generator(device=device).manual_seed(0)
    coarse = torch.randn(batch, 1, window, window, device=device, generator=generator)
    coarse = coarse.contiguous(memory_format=torch.channels_last)
    noise = [
        torch.randn(batch, 1, window * 2**s, window * 2**s, device=device, generator=generator) for s in range(1, stages + 1)
    ]
    dtype = torch.bfloat16 if precision == "bfloat16" else torch.float32

    def run():
        with torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=dtype is torch.bfloat16):
            forward(coarse, stages=stages, noise=noise)

    reset_peak(device)
    seconds = timed(run, device, repeats, warmups=1 if mode == "eager" else 3)
    pixels = batch * (window * factor) ** 2
    return {"seconds": seconds, "output_mpix_per_s": pixels / seconds / 1e6, "peak_mib": peak_memory_mib(device)}


def generator_rows(record: Recorder, device: torch.device, quick: bool, deadline: float) -> None:
    model = load_checkpoint("default").module.to(device, memory_format=torch.channels_last).eval()
    for case in generator_cases(quick, device.type == "cuda"):
        row = dict(zip(("factor", "precision", "mode", "window", "batch"), case, strict=True))
        # a compiled case takes a minute or more to compile: not started too near the deadline
        if time.perf_counter() > deadline - (0 if case[2] == "eager" else COMPILE_SECONDS):
            row["skipped"] = "out of the section's time"
        else:
            try:
                row |= generator_row(model, device, case, 2 if quick else 5)
            except Exception as error:  # a mode that does not work here is a finding, not the end of the run
                text = str(error).splitlines()[0][:160] if str(error) else ""
                row["failed"] = f"{type(error).__name__}: {text}"
        record.add("generator", row)


COMPILE_SECONDS = 90
"""Time a compiled generator case is given to compile before its section's deadline."""


def accuracy_rows(record: Recorder, device: torch.device, quick: bool, deadline: float) -> None:
    """bfloat16 against float32 (RMSE against the truth), device against CPU, seed repeat."""
    size = 32 if quick else 256
    coarse_ds, truth = mosaic(size, 4)
    job = plan(coarse_ds, make_config(factor=4, adaptive=False))
    field = coarse_ds["orog"].values.astype(np.float64)[None]
    depth = job.depth
    outputs = {}
    for name, where, precision in (
        ("CPU float32", "cpu", "float32"),
        ("float32", device.type, "float32"),
        ("bfloat16", device.type, "bfloat16"),
    ):
        refiner = TileRefiner(job.checkpoint.module, 4, job.prepared.layout, device=where, precision=precision)
        outputs[name] = refine_domain(refiner, field, depth, None, [(0, "orog", 0, 0)])[0]
        if name == "float32":
            again = refine_domain(refiner, field, depth, None, [(0, "orog", 0, 0)])[0]
            record.add(
                "accuracy",
                {"check": f"same seed twice on {device.type}", "bit_identical": bool(np.array_equal(again, outputs[name]))},
            )
    rmse = {name: float(np.sqrt(np.mean((values - truth) ** 2))) for name, values in outputs.items()}
    record.add("accuracy", {"check": "RMSE vs truth, float32", "rmse_m": rmse["float32"]})
    record.add(
        "accuracy",
        {"check": "RMSE vs truth, bfloat16", "rmse_m": rmse["bfloat16"], "vs_float32": rmse["bfloat16"] / rmse["float32"] - 1},
    )
    difference = np.abs(outputs["float32"] - outputs["CPU float32"])
    record.add(
        "accuracy",
        {
            "check": f"float32 on {device.type} vs float32 on CPU",
            "max_abs_m": float(difference.max()),
            "rmse_m": float(np.sqrt(np.mean(difference**2))),
        },
    )


def refinement_rows(record: Recorder, device: torch.device, quick: bool, deadline: float) -> None:
    """``climgen.streaming.run`` zarr -> zarr, then the same refinement step by step."""
    from climgen.pipeline import assemble
    from climgen.streaming import StreamOptions, run

    sizes = (32, 64) if quick else (512, 1024)  # peak memory at two domain sizes: bounded by the windows?
    with tempfile.TemporaryDirectory() as folder:
        for size in sizes:
            if time.perf_counter() > deadline:
                record.add("refinement", {"output": f"{size * 4}^2", "skipped": "out of the section's time"})
                continue
            source = Path(folder) / f"coarse-{size}.zarr"
            mosaic(size, 4)[0].chunk({"y": 256, "x": 256}).to_zarr(source, mode="w")
            for label, options in (("default", {}), ("uniform", {"adaptive": False})):
                reset_peak(device)
                started = time.perf_counter()
                with xr.open_zarr(source) as ds:
                    run(
                        ds,
                        Path(folder) / f"{label}-{size}.zarr",
                        make_config(factor=4, **options),
                        options=StreamOptions(progress=False, device=device.type),
                    )
                seconds = time.perf_counter() - started
                record.add(
                    "refinement",
                    {
                        "depth": label,
                        "what": "streaming.run zarr->zarr",
                        "output": f"{size * 4}^2",
                        "seconds": seconds,
                        "output_mpix_per_s": (size * 4) ** 2 / seconds / 1e6,
                        "peak_mib": peak_memory_mib(device),
                    },
                )
        for label, options in (("default", {}), ("uniform", {"adaptive": False})):
            if time.perf_counter() > deadline or not source.exists():
                record.add("refinement", {"depth": label, "what": "steps", "skipped": "out of the section's time"})
                continue
            config = make_config(factor=4, **options)
            steps = {}
            started = time.perf_counter()
            ds = xr.open_zarr(source).load()
            steps["read"] = time.perf_counter() - started
            started = time.perf_counter()
            job = plan(ds, config)
            steps["plan (scores, predicted gain)"] = time.perf_counter() - started
            refiner = job.refiner(device.type)
            model_seconds = [0.0]
            model_call = refiner._model_call

            def timed_call(*arguments, _call=model_call, _spent=model_seconds):
                synchronise(device)
                began = time.perf_counter()
                result = _call(*arguments)
                synchronise(device)
                _spent[0] += time.perf_counter() - began
                return result

            refiner._model_call = timed_call
            started = time.perf_counter()
            with torch.inference_mode():
                fine = refine_domain(
                    refiner, ds["orog"].values.astype(np.float64)[None], job.depth, None, job.seed_keys("orog", [0], 0)
                )
            refined = time.perf_counter() - started
            steps["model"] = model_seconds[0]
            steps["blend and the rest of the tiles"] = refined - model_seconds[0]
            started = time.perf_counter()
            result = assemble(ds, job, {"orog": fine[0]}, job.provenance(1, 0.0))
            result.to_zarr(Path(folder) / f"{label}-steps.zarr", mode="w")
            steps["write"] = time.perf_counter() - started
            total = sum(steps.values())
            for step, seconds in steps.items():
                record.add("refinement", {"depth": label, "what": step, "seconds": seconds, "share": seconds / total})


def training_rows(record: Recorder, device: torch.device, quick: bool, deadline: float) -> None:
    from climgen.training.recipe import load_recipe
    from climgen.training.run import train

    recipe = load_recipe(ROOT / "recipes" / "train-default.yaml")
    steps = 2 if quick else 20
    corpus = recipe.data.corpus
    real = all(Path(recipe.resolve(source.path)).exists() for source in recipe.data.real_fields)
    real = real and (corpus is None or Path(recipe.resolve(corpus.root)).exists())
    generated_only = {"real_fields": [], "validation_fields": [], "real_fraction": 0.0, "corpus": None}
    data = recipe.data if real else recipe.data.model_copy(update=generated_only)
    seconds = {}
    for count in (steps, 4 * steps):  # the difference leaves out start-up, data loading and the save
        if time.perf_counter() > deadline:
            break
        with tempfile.TemporaryDirectory() as folder:
            trial = recipe.model_copy(
                update={
                    "device": device.type,
                    "output": str(Path(folder) / "model"),
                    "data": data,
                    "pretrain": recipe.pretrain.model_copy(
                        update={"steps": count, "validate_every": 10**6, "checkpoint_every": 10**6}
                    ),
                }
            )
            started = time.perf_counter()
            train(trial, log=lambda message: None)
            seconds[count] = time.perf_counter() - started
    row = {"recipe": "train-default.yaml", "batch": recipe.pretrain.batch_size, "real_fields": real}
    row |= {f"seconds_{count}_steps": value for count, value in seconds.items()}
    if len(seconds) == 2 and seconds[4 * steps] > seconds[steps]:  # (not when start-up's jitter is larger)
        row["steps_per_s"] = 3 * steps / (seconds[4 * steps] - seconds[steps])
    record.add("training", row)


SHARES = {"generator": 0.45, "accuracy": 0.6, "refinement": 0.85, "training": 1.0}
"""The share of ``--limit-s`` by which each section should be done (the generator, the longest,
skips its remaining rows past it)."""
SECTIONS = {"generator": generator_rows, "accuracy": accuracy_rows, "refinement": refinement_rows, "training": training_rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--quick", action="store_true", help="every section small (CPU: under a minute)")
    parser.add_argument("--out", type=Path, default=Path("gpu-suite"))
    parser.add_argument("--sections", nargs="+", default=list(SECTIONS), choices=list(SECTIONS))
    parser.add_argument(
        "--limit-s", type=float, default=420, help="seconds the run aims to end within (the generator stops early)"
    )
    arguments = parser.parse_args()
    if arguments.device == "cuda" and not torch.cuda.is_available():
        parser.error("no CUDA device here: use --device cpu")
    device = torch.device(arguments.device)
    record = Recorder(arguments.out, device, arguments.quick)
    started = time.perf_counter()
    for name in arguments.sections:
        try:
            SECTIONS[name](record, device, arguments.quick, started + arguments.limit_s * SHARES[name])
        except Exception:  # the other sections still run, and the failure is kept
            record.add("errors", {"section": name, "traceback": traceback.format_exc().splitlines()[-1]})
    record.add("run", {"seconds": time.perf_counter() - started})
    print(record.markdown())


if __name__ == "__main__":
    main()

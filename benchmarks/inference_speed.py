"""Inference speed of the default generator at x4 (``--factor``) on a heterogeneous real domain, CPU and GPU.

The domain is a mosaic of a real orography that climgen never trained on (``--field``:
``orog_mod2``, mountains beside plains and sea, or ``HSURF``, the regional model's African
terrain, sea included), mirrored to SIZE x SIZE coarse cells so that a GPU has enough to do; the fine truth is the mirrored fine field, so every run is also scored (RMSE).
Tiles get their depth from climgen's complexity scores by the default thresholds (adaptive),
under compute budgets (``--budgets``, share of the full-depth cost), or all the full depth
(uniform); a second table gives each adaptive run's MACs, wall time and RMSE against uniform.
Rows, for each device and precision:

- ``generator``: the model alone on every tile window at its depth, windows of one depth in
  batches, inputs already on the device (what the network costs);
- ``pipeline``: :func:`climgen.refine.refine_domain`, the whole refinement: noise, gap filling,
  model, blending, exact coarse-consistency (what a user waits for, less file I/O);
- ``EDSR 16x64``: a plain EDSR-style network (16 residual blocks of 64 channels, x4 by two
  pixel shuffles) on the same windows, to put the figures on this machine's scale.

Output megapixels are counted on the domain (tile cores x factor^2); ``window MPix/s`` also counts
the halos of the windows the network starts from. Prints a markdown table; ``--json`` saves the rows.
Every row runs under the malloc settings of climgen's CPU path (:mod:`climgen.allocator`; set
``CLIMGEN_MALLOC=system`` to time glibc's defaults).

    python benchmarks/inference_speed.py [--shared ../shared] [--field orog_mod2|HSURF] [--size 256] [--factor 4] [--repeats 3]
        [--devices cpu cuda] [--compile] [--budgets 0.3 ...] [--tile N] [--merge-tiles N] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import xarray as xr
from dask.system import CPU_COUNT
from torch import nn

from climgen._torch import native_bf16, torch_threads
from climgen.allocator import retain_freed_memory
from climgen.depth.compute import compute_report
from climgen.pipeline import make_config, plan
from climgen.refine import TileRefiner, fill_nearest, refine_domain

ROOT = Path(__file__).resolve().parents[1]
FACTOR = 4


def mirror_mosaic(field: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Tile ``field`` with mirrored copies (no jumps at the joins) and crop to ``shape``."""
    quad = np.block([[field, field[:, ::-1]], [field[::-1], field[::-1, ::-1]]])
    reps = (-(-shape[0] // quad.shape[0]), -(-shape[1] // quad.shape[1]))
    return np.tile(quad, reps)[: shape[0], : shape[1]]


FIELDS = {  # held-out real terrain: file in shared/data/ncl and variable
    "orog_mod2": ("orog_mod2_rectilinear_grid_2D.nc", "orog"),
    "HSURF": ("HSURF_regional_model_0.44deg.nc", "HSURF"),
}


def build_domain(shared: Path, size: int, field: str = "orog_mod2", factor: int = FACTOR) -> tuple[xr.Dataset, np.ndarray]:
    """Coarse dataset (SIZE x SIZE on a 12 km y/x grid) and the fine truth (x ``factor``) of one
    of :data:`FIELDS` (the variable is called ``orog`` whichever it is)."""
    filename, variable = FIELDS[field]
    source = xr.open_dataset(shared / "data" / "ncl" / filename)[variable].squeeze()
    fine_field = np.asarray(source.values, dtype=np.float64)
    fine_field = fine_field[: fine_field.shape[0] // factor * factor, : fine_field.shape[1] // factor * factor]
    truth = mirror_mosaic(fine_field, (size * factor, size * factor))
    coarse = truth.reshape(size, factor, size, factor).mean(axis=(1, 3))
    spacing = 12_000.0
    y = xr.DataArray(np.arange(size) * spacing, dims="y", attrs={"standard_name": "projection_y_coordinate", "units": "m"})
    x = xr.DataArray(np.arange(size) * spacing, dims="x", attrs={"standard_name": "projection_x_coordinate", "units": "m"})
    attrs = {"standard_name": "surface_altitude", "units": "m"}
    dataset = xr.Dataset({"orog": (("y", "x"), coarse.astype(np.float32), attrs)}, coords={"y": y, "x": x})
    return dataset, truth


class EDSR(nn.Module):
    """Plain EDSR-style x4 network (reference only): conv, 16 x (conv-ReLU-conv + skip), two
    pixel-shuffle x2 upsamplers, conv."""

    def __init__(self, blocks: int = 16, channels: int = 64):
        super().__init__()
        self.head = nn.Conv2d(1, channels, 3, padding=1)
        self.body = nn.ModuleList(
            nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(), nn.Conv2d(channels, channels, 3, padding=1))
            for _ in range(blocks)
        )
        self.upsample = nn.Sequential(
            nn.Conv2d(channels, 4 * channels, 3, padding=1),
            nn.PixelShuffle(2),
            nn.Conv2d(channels, 4 * channels, 3, padding=1),
            nn.PixelShuffle(2),
        )
        self.tail = nn.Conv2d(channels, 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.head(x)
        skip = features
        for block in self.body:
            features = features + block(features)
        return self.tail(self.upsample(features + skip))


def window_batches(job, refiner: TileRefiner, depth: np.ndarray, values: np.ndarray) -> list[tuple[int, list]]:
    """Model inputs for every model call of the domain (tiles share windows, see
    :meth:`climgen.tiling.TileLayout.group_calls`), grouped by stages and shape in batches of
    the refiner's size. A call that starts past stage 1 gets the coarse values repeated to its
    resolution (the same work as its parent's output)."""
    groups: dict[tuple, list] = {}
    for call in sorted(job.prepared.layout.model_calls(depth), key=lambda c: (c.first, c.last, c.box)):
        groups.setdefault((call.first, call.last, call.box[1] - call.box[0], call.box[3] - call.box[2]), []).append(call)
    batches = []
    for (first, last, *_), calls in groups.items():
        for start in range(0, len(calls), refiner.batch_size):
            chunk = calls[start : start + refiner.batch_size]
            scale = 2 ** (first - 1)
            inputs = np.stack([np.kron(fill_nearest(values[c.window]), np.ones((scale, scale))) for c in chunk])
            keys = [(0, "orog", 0, 0)] * len(chunk)
            field, _, _, noise = refiner.model_inputs([c.window for c in chunk], inputs, keys, last, None, first)
            batches.append((last - first + 1, [field, None, None, *noise]))
    return batches


def timed(run, device: torch.device, repeats: int) -> float:
    """Median wall seconds of ``run()`` after one warm-up (GPU work synchronised)."""
    run()
    seconds = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        run()
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds)


def generator_seconds(refiner: TileRefiner, batches: list, cores: int, repeats: int) -> float:
    """Median seconds of the model calls alone: on a GPU one stream of batches, on CPU
    ``cores`` threads of one torch thread each taking batches as they free up, the largest
    first (as climgen's scheduler runs tiles there)."""
    if refiner.device.type == "cuda":
        return timed(lambda: run_generator(refiner, batches), refiner.device, repeats)
    largest_first = sorted(batches, key=lambda batch: -batch[0] * batch[1][0].numel())
    return timed(
        lambda: parallel_cpu([lambda b=b: run_generator(refiner, [b]) for b in largest_first], cores), refiner.device, repeats
    )


def pipeline_seconds(refiner: TileRefiner, field: np.ndarray, depth: np.ndarray, repeats: int) -> tuple[float, np.ndarray]:
    """Median seconds of :func:`refine_domain` on one field, and its result."""
    outputs = {}

    def run():
        outputs["fine"] = refine_domain(refiner, field[None], depth, None, [(0, "orog", 0, 0)])[0]

    return timed(run, refiner.device, repeats), outputs["fine"]


def run_generator(refiner: TileRefiner, batches: list) -> None:
    # in inference mode, as the pipeline runs the model (no autograd records of activations)
    with torch.inference_mode():
        for stages, (field, covariates, mask, *noise) in batches:
            refiner._model_call(field, covariates, mask, stages, noise)


def parallel_cpu(work: list, cores: int) -> None:
    """Run callables on ``cores`` threads with one torch thread each (climgen's CPU layout)."""
    import dask

    with torch_threads(1):
        dask.compute(*[dask.delayed(item)() for item in work], scheduler="threads", num_workers=cores)


def machine_description() -> str:
    """The CPU's model name and the instruction set torch uses (CPU figures differ about 2x
    between the machines CI lands on), and the GPU's name when there is one."""
    name = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        name = next(
            (line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if line.startswith("model name")), name
        )
    bf16 = ", native bf16" if native_bf16("cpu") else ", no native bf16"
    description = f"{name}, {CPU_COUNT} cores, torch {torch.__version__} ({torch.backends.cpu.get_cpu_capability()}{bf16})"
    if torch.cuda.is_available():
        description += f"; GPU {torch.cuda.get_device_name()}"
    return description


def print_row(row: dict) -> None:
    """One markdown table row, printed at once (a long GPU run that is cut off keeps its rows)."""
    rmse = f"{row['rmse']:.2f}" if "rmse" in row else ""
    gmacs = f"{row['gmacs']:.1f}" if "gmacs" in row else ""
    print(
        f"| {row['device']} | {row['what']} | {row['seconds']:.3f} | {row['mpix_per_s']:.2f} | "
        f"{row['window_mpix_per_s']:.2f} | {gmacs} | {rmse} |",
        flush=True,
    )


def measure(
    args, job, modes: dict, field: np.ndarray, truth: np.ndarray, device: str, precision: str, compile_model: bool
) -> list[dict]:
    """Generator and pipeline rows for each depth map in ``modes``, and the EDSR row, for one
    device and precision."""
    layout = job.prepared.layout
    torch_device = torch.device(device)
    cores = CPU_COUNT
    factor = job.config.factor
    refiner = TileRefiner(
        job.checkpoint.module, factor, layout, device=device, precision=precision, compile=compile_model, batch_size=args.batch
    )
    label = (
        f"{device} {precision}"
        + (" channels-last" if device == "cuda" else f" ({cores} threads)")
        + (" compiled" if compile_model else "")
    )
    domain_mpix = field.size * factor * factor / 1e6
    rows = []
    for mode, depth in modes.items():
        # the windows refinements start from (later stages refine inside them), on the fine grid
        window_pixels = sum(call.cells * factor * factor for call in layout.model_calls(depth) if call.first == 1)
        macs = compute_report(job.checkpoint.module, layout, depth, refiner.full_depth, 1, covariates=False)["macs"]
        seconds = generator_seconds(refiner, window_batches(job, refiner, depth, field), cores, args.repeats)
        rows.append(
            {
                "device": label,
                "what": f"generator, {mode}",
                "seconds": seconds,
                "mpix_per_s": domain_mpix / seconds,
                "window_mpix_per_s": window_pixels / 1e6 / seconds,
                "gmacs": macs / 1e9,
            }
        )
        print_row(rows[-1])
        seconds, fine = pipeline_seconds(refiner, field, depth, args.repeats)
        rmse = float(np.sqrt(np.mean((fine - truth) ** 2)))
        rows.append(
            {
                "device": label,
                "what": f"pipeline, {mode}",
                "seconds": seconds,
                "mpix_per_s": domain_mpix / seconds,
                "window_mpix_per_s": window_pixels / 1e6 / seconds,
                "gmacs": macs / 1e9,
                "rmse": rmse,
            }
        )
        print_row(rows[-1])
    if args.interleaved:
        for mode, timing in interleaved_ratios(refiner, field, modes, args.interleaved).items():
            rows.append({"device": label, "what": f"interleaved, {mode}", "mpix": domain_mpix} | timing)
    # every window once (gaps filled), batched by shape: the coarse inputs of a uniform run
    if factor == 4:  # the reference network is x4 only
        edsr_batches = [inputs[0] for _, inputs in window_batches(job, refiner, np.full_like(job.depth, 1), field)]
        rows.append(measure_edsr(args, edsr_batches, torch_device, precision, compile_model, label, domain_mpix))
        print_row(rows[-1])
    return rows


def measure_edsr(
    args, batches: list, device: torch.device, precision: str, compile_model: bool, label: str, domain_mpix: float
) -> dict:
    """The EDSR reference on the same windows, device and precision."""
    network = EDSR().eval().to(device)
    on_gpu = device.type == "cuda"
    if on_gpu:
        network = network.to(memory_format=torch.channels_last)
    forward = torch.compile(network) if compile_model else network
    window_pixels = sum(b.shape[0] * b.shape[-2] * b.shape[-1] * FACTOR * FACTOR for b in batches)

    def run_batches(chunk):
        with torch.inference_mode(), torch.autocast(device.type, torch.bfloat16, enabled=precision == "bfloat16"):
            for batch in chunk:
                batch = batch.to(device)
                if on_gpu:
                    batch = batch.contiguous(memory_format=torch.channels_last)
                forward(batch)

    cores = CPU_COUNT
    if on_gpu:
        seconds = timed(lambda: run_batches(batches), device, args.repeats)
    else:
        per_core = [batches[i::cores] for i in range(cores)]
        seconds = timed(lambda: parallel_cpu([lambda c=c: run_batches(c) for c in per_core], cores), device, args.repeats)
    return {
        "device": label,
        "what": "EDSR 16x64 (reference)",
        "seconds": seconds,
        "mpix_per_s": domain_mpix / seconds,
        "window_mpix_per_s": window_pixels / 1e6 / seconds,
    }


def interleaved_ratios(refiner: TileRefiner, field: np.ndarray, modes: dict, pairs: int) -> dict[str, dict]:
    """Per depth map: the quartiles of its time over uniform depth's, the two run in turn
    ``pairs`` times in one process (which comes first alternates), so that a machine whose
    speed drifts slows both alike; and the median seconds of each."""

    def seconds(depth: np.ndarray) -> float:
        started = time.perf_counter()
        refine_domain(refiner, field[None], depth, None, [(0, "orog", 0, 0)])
        return time.perf_counter() - started

    uniform = modes["uniform"]
    results = {}
    for mode, depth in modes.items():
        if mode == "uniform":
            continue
        seconds(depth), seconds(uniform)  # warm-up
        times = []
        for pair in range(pairs):
            if pair % 2 == 0:
                own, other = seconds(depth), seconds(uniform)
            else:
                other, own = seconds(uniform), seconds(depth)
            times.append((own, other))
        own, other = np.array(times).T
        results[mode] = {
            "ratio_quartiles": [float(q) for q in np.percentile(own / other, [25, 50, 75])],
            "seconds": float(np.median(own)),
            "uniform_seconds": float(np.median(other)),
        }
    return results


def print_interleaved(rows: list[dict], pairs: int) -> None:
    """The time of each depth map over uniform depth's, from runs in turn (:func:`interleaved_ratios`)."""
    chosen = [row for row in rows if row["what"].startswith("interleaved, ")]
    if not chosen:
        return
    print(
        f"\n| device | depth map | time / uniform's (median of {pairs} runs in turn with uniform depth's) | interquartile range "
        "| output MPix/s | uniform's output MPix/s |"
    )
    print("|---|---|---|---|---|---|")
    for row in chosen:
        low, median, high = row["ratio_quartiles"]
        print(
            f"| {row['device']} | {row['what'].removeprefix('interleaved, ')} | {median:.2f} | {low:.2f}-{high:.2f} "
            f"| {row['mpix'] / row['seconds']:.1f} | {row['mpix'] / row['uniform_seconds']:.1f} |"
        )


def print_savings(rows: list[dict]) -> None:
    """Each adaptive pipeline row against the uniform one of its device: MACs, wall time, RMSE."""
    print("\n| device | depth map | MACs / uniform | uniform time / time | RMSE change |")
    print("|---|---|---|---|---|")
    for row in rows:
        if not row["what"].startswith("pipeline, ") or row["what"] == "pipeline, uniform":
            continue
        uniform = next(r for r in rows if r["device"] == row["device"] and r["what"] == "pipeline, uniform")
        print(
            f"| {row['device']} | {row['what'].removeprefix('pipeline, ')} | {row['gmacs'] / uniform['gmacs']:.2f} "
            f"(1/{uniform['gmacs'] / row['gmacs']:.1f}) | {uniform['seconds'] / row['seconds']:.2f} | "
            f"{100 * (row['rmse'] / uniform['rmse'] - 1):+.2f}% |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    parser.add_argument("--size", type=int, default=256, help="coarse cells per side of the mosaic")
    parser.add_argument("--factor", type=int, choices=[2, 4, 8, 16], default=FACTOR, help="refinement factor (EDSR row: x4 only)")
    parser.add_argument("--field", choices=sorted(FIELDS), default="orog_mod2", help="held-out terrain the mosaic is made of")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=None, help="windows per model call (default: 1 on CPU, 128 on GPU)")
    parser.add_argument("--devices", nargs="+", default=["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    parser.add_argument("--compile", action="store_true", help="also time torch.compile on the GPU")
    parser.add_argument("--tile", type=int, default=None, help="tile size in coarse cells (default: climgen's choice)")
    parser.add_argument(
        "--merge-tiles", type=int, default=None, help="tiles a side sharing one window (default: climgen's choice; 1: none)"
    )
    parser.add_argument("--budgets", type=float, nargs="*", default=[0.3], help="also run these compute budgets")
    parser.add_argument("--model", default="default", help="the model timed: default, amsgm-multibranch or a checkpoint")
    parser.add_argument(
        "--interleaved", type=int, default=0, help="also time each depth map against uniform depth's in turn, this many times"
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    dataset, truth = build_domain(args.shared, args.size, args.field, args.factor)
    layout_options = {"factor": args.factor, "tile_size": args.tile, "merge_tiles": args.merge_tiles, "model": args.model}
    job = plan(dataset, make_config(**layout_options))
    field = dataset["orog"].values.astype(np.float64)
    modes = {"adaptive": job.depth}
    for budget in args.budgets:
        modes[f"budget {budget:g}"] = plan(dataset, make_config(budget=budget, **layout_options)).depth
    full_depth = args.factor.bit_length() - 1
    modes["uniform"] = np.full_like(job.depth, full_depth)
    histogram = {mode: [int((depth == k).sum()) for k in range(full_depth + 1)] for mode, depth in modes.items()}
    # every row under the same allocator settings as climgen's CPU path (EDSR's included)
    allocator = "glibc thresholds raised" if retain_freed_memory() else "system allocator"
    machine = f"{machine_description()}; {allocator}"
    print(f"machine: {machine}")
    layout = job.prepared.layout
    print(
        f"{args.field} mosaic {args.size}^2 -> {args.size * args.factor}^2, {job.depth.size} tiles of {layout.tile} (halo {layout.halo}, "
        f"{layout.later_halo if layout.later_halo is not None else layout.halo} for windows later stages open, "
        f"{layout.merge}x{layout.merge} share a window); tiles at each depth from 0: {histogram}"
    )
    print("\n| device | what | seconds | output MPix/s | window MPix/s | GMACs | RMSE (m) |")
    print("|---|---|---|---|---|---|---|", flush=True)
    rows = []
    for device in args.devices:
        precisions = ["bfloat16", "float32"] if native_bf16(device) else ["float32"]  # bf16 first: what auto takes
        for precision in precisions:
            rows += measure(args, job, modes, field, truth, device, precision, False)
        if device == "cuda" and args.compile:
            rows += measure(args, job, modes, field, truth, device, "bfloat16", True)
    print_savings(rows)
    print_interleaved(rows, args.interleaved)
    if args.json:
        args.json.write_text(
            json.dumps({"machine": machine, "size": args.size, "depth_histogram": histogram, "rows": rows}, indent=1)
        )


if __name__ == "__main__":
    main()

"""What every training loop shares: the device, the progress bar, the optimiser, schedule and
resumable state (:func:`start_loop`), checkpoint metadata, real fields as crop pools and
batches, and the windows of a recipe's validation fields.

Nothing here imports a training loop, so the loops (:mod:`~climgen.training.pretrain`,
:mod:`~climgen.training.adversarial`, :mod:`~climgen.training.hierarchical`,
:mod:`~climgen.training.baselines`) share it without importing each other both ways.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from climgen import __version__
from climgen.errors import TrainingError
from climgen.training.data import RealFieldPool, SampleGenerator, load_real_pool
from climgen.training.recipe import TrainRecipe


def pick_device(requested: str) -> torch.device:
    """``auto`` takes CUDA when present, else the CPU; ``cuda`` without a GPU is a clear error."""
    from climgen._torch import check_device

    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(check_device(requested))


def autocast(device: torch.device, precision: str = "float32"):
    """The region the generator's forward pass runs in: float32 by default (tf32 convolutions
    on a GPU), bf16 autocast when a recipe asks for ``precision: bfloat16``.

    Not the default on GPUs: bf16 autocast diverged on an H100 within 50 steps of
    pre-training (validation RMSE 23x bicubic's) while float32 on the same GPU, and bf16 on
    CPU, trained normally. Pre-training then computed its losses inside the autocast region
    (MS-SSIM's filters in bf16); every loop now computes them in float32 outside it, which
    is the first thing a GPU run with ``--precision bfloat16`` should check.
    Inference uses bf16 on GPUs (:class:`climgen.refine.TileRefiner`), where it was checked
    against the CPU result.
    """
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=precision == "bfloat16")


def training_progress(total: int, done: int, description: str):
    """The steps' progress on stderr (rate, time left): redrawn on a terminal, a line a minute
    into a batch job's log (:func:`climgen.progress.progress_bar`)."""
    from climgen.progress import progress_bar

    return progress_bar(total, done, description, "step", leave=False)


def checkpoint_metadata(recipe: TrainRecipe, device: torch.device, real_sources: list[dict]) -> dict:
    """What every trained checkpoint records: names, versions, device, recipe, training data."""
    generated = (
        "Gaussian random fields (spectral slope 1.8-4.2) with varying roughness, fronts, "
        "fractions and intermittent fields; covariates related with random sign and strength"
    )
    if recipe.data.large_scale_covariate_share:
        generated += f", {recipe.data.large_scale_covariate_share:g} of them at large scales only (covariate smoothed)"
    return {
        "name": recipe.name,
        "climgen_version": __version__,
        "git_revision": _git_revision(),
        "trained_on_device": str(device),
        "torch_version": torch.__version__,
        # a fine-tune's architecture is its init_from's (the checkpoint's "config"), not the model section's defaults
        "recipe": recipe.model_dump(mode="json", exclude={"base_dir", "model"} if recipe.init_from else {"base_dir"}),
        "training_data": {
            "generated": generated,
            "real_fields": [f"{Path(s['path']).name}:{s['variable']} sel={s.get('sel')}" for s in real_sources],
        },
    }


def _git_revision() -> str:
    """climgen's own commit (``-dirty`` with changes not committed) when it runs from a
    checkout, whatever folder the training runs in; else "unknown" (an installed package)."""
    package = Path(__file__).resolve().parents[1]
    command = ["git", "-C", str(package), "describe", "--always", "--dirty", "--abbrev=40", "--match", "NO-TAGS"]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=5)
        top = subprocess.run(
            ["git", "-C", str(package), "rev-parse", "--show-toplevel"], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    # a package installed inside some other repository is not that repository's commit
    if result.returncode or Path(top.stdout.strip() or "/").resolve() != package.parent:
        return "unknown"
    return result.stdout.strip() or "unknown"


def resolved_sources(recipe: TrainRecipe, fields: list) -> list[dict]:
    """The recipe's ``fields`` as dictionaries, their data and covariate paths resolved
    against the recipe's folder."""
    sources = [source.model_dump() | {"path": recipe.resolve(source.path)} for source in fields]
    for source in sources:
        if source.get("covariate_path"):
            source["covariate_path"] = recipe.resolve(source["covariate_path"])
    return sources


def real_pool_of(recipe: TrainRecipe, min_valid: float = 1.0) -> tuple[RealFieldPool | None, list[dict]]:
    """The recipe's real fields (paths resolved) as a crop pool (None without any), and their
    sources; ``min_valid`` below 1 keeps fields with missing cells (:func:`load_real_pool`)."""
    real_sources = resolved_sources(recipe, recipe.data.real_fields)
    pool = load_real_pool(real_sources, recipe.data.crop_size, min_valid) if real_sources else None
    return pool, real_sources


def draw_batch(sampler: SampleGenerator, rng: np.random.Generator, size: int, device: torch.device):
    """``size`` training crops as tensors: target (B, 1, n, n), covariates and their mask."""
    samples = [sampler(rng) for _ in range(size)]
    target = torch.tensor(np.stack([s[0] for s in samples]), dtype=torch.float32, device=device)[:, None]
    covariates = torch.tensor(np.stack([s[1] for s in samples]), dtype=torch.float32, device=device)
    mask = torch.tensor(np.stack([s[2] for s in samples]), dtype=torch.float32, device=device)
    return target, covariates, mask


def field_validation_windows(recipe: TrainRecipe, size: int, min_valid: float = 1.0) -> list[np.ndarray]:
    """Square windows (``size`` cells, or less for narrow regions, at least 16) tiling the
    recipe's ``validation_fields``, each with at least ``min_valid`` of its cells valid: the
    held-out windows a recipe's validation scores. Fields that give none are an error, not a
    run without validation."""
    return [window for window, _ in field_validation_pairs(recipe, size, min_valid)]


def field_validation_pairs(recipe: TrainRecipe, size: int, min_valid: float = 1.0) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """:func:`field_validation_windows` with each window's covariate (the same cells of the
    field's ``covariate_path``), or None for a field without one."""
    from climgen.errors import ConfigError

    sources = resolved_sources(recipe, recipe.data.validation_fields)
    if not sources:
        return []
    pool = load_real_pool(sources, min_valid=min_valid)
    pairs = []
    for target, covariate in zip(pool.targets, pool.covariates, strict=True):
        side = min(size, min(target.shape) // 16 * 16)  # regions narrower than a crop still count
        if side == 0:
            continue
        for y0 in range(0, target.shape[0] - side + 1, side):
            for x0 in range(0, target.shape[1] - side + 1, side):
                window = target[y0 : y0 + side, x0 : x0 + side]
                if np.isfinite(window).mean() >= min_valid:
                    pairs.append((window, None if covariate is None else covariate[y0 : y0 + side, x0 : x0 + side]))
    by_side: dict[int, list] = {}
    for pair in pairs:
        by_side.setdefault(pair[0].shape[0], []).append(pair)
    if not by_side:
        regions = list(dict.fromkeys(f"{target.shape[0]} x {target.shape[1]}" for target in pool.targets))
        raise ConfigError(
            f"data.validation_fields give no window of at least 16 x 16 cells with {min_valid:.0%} of them valid "
            f"(their regions: {', '.join(regions[:3])}): widen the validation region"
        )
    return max(by_side.values(), key=len)


@dataclass
class TrainingLoop:
    """The optimiser, schedule and noise stream of one training run, with its validation
    history and where an interrupted run resumes (:func:`start_loop`)."""

    optimiser: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LRScheduler
    noise: torch.Generator
    output: str
    fingerprint: str
    history: list[dict] = field(default_factory=list)
    first_step: int = 1
    running: list[float] = field(default_factory=list)
    """Losses since the last validation record (saved with the state, so a resumed run's
    records are an uninterrupted run's)."""
    seconds_before: float = 0.0
    """Training seconds of the runs this one resumes."""
    started: float = field(default_factory=time.perf_counter)
    device: str = "cpu"

    def step(self, model: torch.nn.Module, loss: torch.Tensor) -> None:
        """One optimiser step on ``loss`` (gradients clipped to norm 1) and one schedule step;
        a loss that is not finite stops training before it reaches the weights."""
        try:
            check_finite(loss)
        except TrainingError:
            from climgen.training.state import clear_state

            clear_state(self.output)  # the same run from its saved state would diverge again
            raise
        self.optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        self.optimiser.step()
        self.schedule.step()

    def record(self, record: dict, log) -> None:
        """Keep one validation record and log it as ``key=value`` pairs."""
        self.history.append(record)
        log(" ".join(f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}" for key, value in record.items()))

    def save_if_due(self, step: int, settings, model: torch.nn.Module, rng: np.random.Generator) -> None:
        """Save the whole training state every ``checkpoint_every`` steps (not after the last)."""
        from climgen.training.state import save_state

        if step % settings.checkpoint_every == 0 and step < settings.steps:
            save_state(
                self.output,
                step,
                self.fingerprint,
                model,
                self.optimiser,
                self.schedule,
                rng,
                self.noise,
                {
                    "history": self.history,
                    "running": self.running,
                    "seconds": self.seconds_before + self.elapsed(),
                    "arithmetic": arithmetic(self.device),
                },
            )

    def elapsed(self) -> float:
        """Seconds since this run started its loop."""
        return time.perf_counter() - self.started


def check_finite(loss: torch.Tensor) -> None:
    """Stop a run whose loss is NaN or infinite (it diverged: every later step would be too),
    before an optimiser step spreads it into the weights."""
    value = float(loss.detach())
    if not np.isfinite(value):
        raise TrainingError(
            f"training diverged: the loss is {value}; no checkpoint was written and no state kept to resume "
            "(lower the learning rate)"
        )


def start_run(recipe: TrainRecipe) -> tuple[torch.device, np.random.Generator]:
    """The recipe's threads, device and seeds set: the device, and the numpy stream every data
    draw comes from."""
    if recipe.threads:
        torch.set_num_threads(recipe.threads)
    device = pick_device(recipe.device)
    if device.type == "cuda":  # training's float32 convolutions take TF32 (a float32 refinement turns it off)
        torch.backends.cudnn.allow_tf32 = True
    torch.manual_seed(recipe.seed)
    return device, np.random.default_rng(recipe.seed)


def start_loop(recipe: TrainRecipe, model: torch.nn.Module, rng: np.random.Generator, device: torch.device, log) -> TrainingLoop:
    """AdamW with a linear warm-up over the first twentieth of the steps and a cosine decay, the
    noise stream (seeded by the recipe), and the saved state of an interrupted run of the same
    recipe, when there is one, loaded into them."""
    from climgen.training.state import load_state, recipe_fingerprint, state_paths

    settings = recipe.pretrain
    optimiser = torch.optim.AdamW(model.parameters(), lr=settings.learning_rate, weight_decay=1e-4)
    warmup, total = max(1, settings.steps // 20), max(1, settings.steps)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda step: min(1.0, (step + 1) / warmup) * 0.5 * (1 + np.cos(np.pi * min(step, total) / total))
    )
    loop = TrainingLoop(
        optimiser,
        schedule,
        torch.Generator().manual_seed(recipe.seed),  # on the CPU: a run saved on a GPU resumes anywhere
        recipe.resolve(recipe.output),
        # where it is written is no part of the trajectory (and may be given relative or absolute)
        recipe_fingerprint(recipe.model_dump(mode="json", exclude={"base_dir", "device", "threads", "output"})),
        device=str(device),
    )
    # a state saved before the output left the fingerprint (the output as the recipe gave it)
    legacy = recipe_fingerprint(recipe.model_dump(mode="json", exclude={"base_dir", "device", "threads"}))
    resumed = load_state(loop.output, (loop.fingerprint, legacy), model, optimiser, schedule, rng, loop.noise)
    if resumed is not None:
        done, record = resumed
        loop.history, loop.running = record["history"], record.get("running", [])
        loop.seconds_before = float(record.get("seconds") or 0.0)
        loop.first_step = done + 1
        log(f"resuming from step {done} of {settings.steps} ({state_paths(loop.output)[1]})")
        before, now = record.get("arithmetic"), arithmetic(loop.device)
        if before is not None and before != now:
            changed = ", ".join(f"{key} {before.get(key)} -> {now.get(key)}" for key in now if before.get(key) != now.get(key))
            from climgen.errors import ClimgenWarning, warn_user

            warn_user(
                f"resuming with other arithmetic than the run started with ({changed}): the weights will differ "
                "from an uninterrupted run's (set them back to reproduce it)",
                ClimgenWarning,
            )
    return loop


def arithmetic(device: str) -> dict:
    """What a run's floating-point results depend on besides the recipe: the device, the
    number of torch threads (the order of sums on the CPU) and torch's version."""
    return {"device": str(device), "threads": torch.get_num_threads(), "torch": torch.__version__}

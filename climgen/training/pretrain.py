"""Stage 1 of training: pre-train the generator with content losses (L1 + MS-SSIM).

This is the only place (with the later training stages) where optimisers exist.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from pytorch_msssim import ms_ssim

from climgen import __version__
from climgen.models.checkpoint import save_checkpoint
from climgen.models.generator import AdaptiveMultiScaleGenerator, GeneratorConfig, bicubic_upsample, coarsen
from climgen.training.data import SampleGenerator, load_real_pool
from climgen.training.recipe import TrainRecipe

MSSSIM_WEIGHTS = (0.3, 0.4, 0.3)  # three scales: crops of 64 cells are too small for five
MSSSIM_WINDOW = 3  # pytorch-msssim asserts side > (window - 1) * 16 whatever the scale count


def pick_device(requested: str) -> torch.device:
    """``auto`` takes CUDA when present, else the CPU."""
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(requested)


def autocast(device: torch.device, precision: str = "float32"):
    """The region the generator's forward pass runs in: float32 by default (tf32 convolutions
    on a GPU), bf16 autocast when a recipe asks for ``precision: bfloat16``.

    Not the default on GPUs: bf16 autocast diverged on an H100 (2026-11-23) within 50 steps of
    pre-training (validation RMSE 23x bicubic's) while float32 on the same GPU, and bf16 on
    CPU, trained normally. Pre-training then computed its losses inside the autocast region
    (MS-SSIM's filters in bf16); every loop now computes them in float32 outside it, which
    is the first thing a GPU run with ``--precision bfloat16`` should check (docs/results.md).
    Inference uses bf16 on GPUs (:class:`climgen.refine.TileRefiner`), where it was checked
    against the CPU result.
    """
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=precision == "bfloat16")


def training_progress(total: int, done: int, description: str):
    """A progress bar on stderr for an interactive terminal (steps, rate, time left); silent otherwise."""
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=done, desc=description, unit="step", disable=None, leave=False)


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
        "recipe": recipe.model_dump(mode="json", exclude={"base_dir"}),
        "training_data": {
            "generated": generated,
            "real_fields": [f"{Path(s['path']).name}:{s['variable']} sel={s.get('sel')}" for s in real_sources],
        },
    }


def _git_revision() -> str:
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
    except OSError:
        return "unknown"
    return result.stdout.strip() or "unknown"


def content_loss(outputs: list[torch.Tensor], target: torch.Tensor, msssim_weight: float) -> torch.Tensor:
    """Scale-free L1 at every stage plus MS-SSIM on the finest output."""
    scale = target.std(dim=(-2, -1), keepdim=True) + 1e-6
    loss = target.new_zeros(())
    stages = len(outputs)
    for stage, output in enumerate(outputs, start=1):
        truth = coarsen(target, 2 ** (stages - stage))
        loss = loss + F.l1_loss(output / scale, truth / scale)
    if msssim_weight > 0 and min(target.shape[-2:]) > (MSSSIM_WINDOW - 1) * 16:
        low = target.amin(dim=(-2, -1), keepdim=True)
        span = target.amax(dim=(-2, -1), keepdim=True) - low + 1e-6
        similarity = ms_ssim(
            ((outputs[-1] - low) / span).clamp(-0.5, 1.5),
            (target - low) / span,
            data_range=1.0,
            win_size=MSSSIM_WINDOW,
            weights=list(MSSSIM_WEIGHTS),
        )
        loss = loss + msssim_weight * (1 - similarity)
    return loss


def training_data(recipe: TrainRecipe, covariate_slots: int) -> tuple[SampleGenerator, list[np.ndarray], list[dict]]:
    """The crop sampler, the held-out validation windows and the real sources of a recipe."""
    real_sources = [source.model_dump() | {"path": recipe.resolve(source.path)} for source in recipe.data.real_fields]
    for source in real_sources:
        if source.get("covariate_path"):
            source["covariate_path"] = recipe.resolve(source["covariate_path"])
    real_pool = load_real_pool(real_sources, recipe.data.crop_size) if real_sources else None
    sampler = SampleGenerator(
        recipe.data.crop_size, covariate_slots, real_pool, recipe.data.real_fraction, recipe.data.large_scale_covariate_share
    )
    return sampler, _validation_windows(recipe, recipe.data.crop_size), real_sources


def draw_batch(sampler: SampleGenerator, rng: np.random.Generator, size: int, device: torch.device):
    """``size`` training crops as tensors: target (B, 1, n, n), covariates and their mask."""
    samples = [sampler(rng) for _ in range(size)]
    target = torch.tensor(np.stack([s[0] for s in samples]), dtype=torch.float32, device=device)[:, None]
    covariates = torch.tensor(np.stack([s[1] for s in samples]), dtype=torch.float32, device=device)
    mask = torch.tensor(np.stack([s[2] for s in samples]), dtype=torch.float32, device=device)
    return target, covariates, mask


def _validation_windows(recipe: TrainRecipe, size: int) -> list[np.ndarray]:
    sources = [source.model_dump() | {"path": recipe.resolve(source.path)} for source in recipe.data.validation_fields]
    if not sources:
        return []
    pool = load_real_pool(sources)
    windows = []
    for target in pool.targets:
        side = min(size, min(target.shape) // 16 * 16)  # regions narrower than a crop still count
        if side == 0:
            continue
        for y0 in range(0, target.shape[0] - side + 1, side):
            for x0 in range(0, target.shape[1] - side + 1, side):
                windows.append(target[y0 : y0 + side, x0 : x0 + side])
    by_side: dict[int, list] = {}
    for window in windows:
        by_side.setdefault(window.shape[0], []).append(window)
    return max(by_side.values(), key=len) if by_side else []


@torch.no_grad()
def validate(model: AdaptiveMultiScaleGenerator, windows: list[np.ndarray], device: torch.device, stages: int = 2) -> dict:
    """RMSE of the model and of bicubic, SSIM (:func:`climgen.metrics.ssim`, each window
    against its own truth: the SSIM ``climgen evaluate`` reports) and PSNR (data range of the
    truth), on held-out windows coarsened by 2**stages."""
    from climgen import metrics

    if not windows:
        return {}
    model.eval()
    truth = torch.tensor(np.stack(windows), dtype=torch.float32, device=device)[:, None]
    coarse = coarsen(truth, 2**stages)
    generator = torch.Generator(device=device).manual_seed(0)
    with torch.no_grad():
        predicted = model(coarse, stages=stages, generator=generator)[-1]
    model.train()
    bicubic = bicubic_upsample(coarse, 2**stages)
    data_range = float(truth.max() - truth.min()) or 1.0
    rmse = torch.sqrt(((predicted - truth) ** 2).mean()).item()
    rmse_bicubic = torch.sqrt(((bicubic - truth) ** 2).mean()).item()
    truths, predictions, bicubics = (t[:, 0].double().cpu().numpy() for t in (truth, predicted, bicubic))

    def mean_ssim(fields: np.ndarray) -> float:
        return float(np.mean([metrics.ssim(field, target) for field, target in zip(fields, truths, strict=True)]))

    return {
        "factor": 2**stages,
        "rmse": rmse,
        "rmse_bicubic": rmse_bicubic,
        "ratio": rmse / rmse_bicubic,
        "ssim": mean_ssim(predictions),
        "ssim_bicubic": mean_ssim(bicubics),
        "psnr": float(20 * np.log10(data_range / rmse)) if rmse > 0 else float("inf"),
    }


def _initial_model(recipe: TrainRecipe, device: torch.device) -> tuple[AdaptiveMultiScaleGenerator, str | None]:
    """A fresh generator, or a copy of a checkpoint to fine-tune (stage 3)."""
    if recipe.init_from is None:
        return AdaptiveMultiScaleGenerator(GeneratorConfig.from_dict(recipe.model.model_dump())).to(device), None
    from climgen.models.checkpoint import SHIPPED, load_checkpoint

    source = recipe.init_from if recipe.init_from in SHIPPED else recipe.resolve(recipe.init_from)
    checkpoint = load_checkpoint(source)
    model = AdaptiveMultiScaleGenerator(checkpoint.module.config)
    model.load_state_dict(checkpoint.module.state_dict())
    return model.to(device), f"{checkpoint.name} (sha256 {checkpoint.sha256})"


def pretrain(recipe: TrainRecipe, log=print) -> Path:
    """Train (or fine-tune, with ``init_from``) a generator as the recipe says and save it.

    Every ``checkpoint_every`` steps the full training state is saved beside the output; run
    the same recipe again after an interruption and it continues from there, ending with the
    same weights as an uninterrupted run. Returns the weights path.
    """
    from climgen.training.state import clear_state, load_state, recipe_fingerprint, save_state

    if recipe.threads:
        torch.set_num_threads(recipe.threads)
    device = pick_device(recipe.device)
    torch.manual_seed(recipe.seed)
    rng = np.random.default_rng(recipe.seed)
    model, initial = _initial_model(recipe, device)
    config = model.config
    sampler, windows, real_sources = training_data(recipe, config.covariate_slots)
    settings = recipe.pretrain
    optimiser = torch.optim.AdamW(model.parameters(), lr=settings.learning_rate, weight_decay=1e-4)
    warmup = max(1, settings.steps // 20)
    total = max(1, settings.steps)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda step: min(1.0, (step + 1) / warmup) * 0.5 * (1 + np.cos(np.pi * step / total))
    )
    noise_generator = torch.Generator(device=device).manual_seed(recipe.seed)
    output = recipe.resolve(recipe.output)
    fingerprint = recipe_fingerprint(recipe.model_dump(mode="json", exclude={"base_dir", "device", "threads"}))
    history: list[dict] = []
    first_step = 1
    resumed = load_state(output, fingerprint, model, optimiser, schedule, rng, noise_generator)
    if resumed is not None:
        done, history = resumed
        first_step = done + 1
        log(f"resuming from step {done} of {settings.steps}")
    started = time.perf_counter()
    progress = training_progress(settings.steps, first_step - 1, "pre-training")
    for step in range(first_step, settings.steps + 1):
        target, covariates, mask = draw_batch(sampler, rng, settings.batch_size, device)
        stages = int(rng.integers(1, settings.max_stages + 1))
        with autocast(device, recipe.precision):
            outputs = model(coarsen(target, 2**stages), covariates, mask, stages=stages, generator=noise_generator)
        # losses in float32, as in the other loops (MS-SSIM subtracts squared means from filtered squares)
        loss = content_loss([output.float() for output in outputs], target, settings.msssim_weight)
        progress.update(1)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimiser.step()
        schedule.step()
        if step % settings.validate_every == 0 or step == settings.steps:
            scores = validate(model, windows, device)
            record = {"step": step, "loss": round(loss.item(), 5), **scores, "seconds": round(time.perf_counter() - started, 1)}
            history.append(record)
            log(" ".join(f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}" for key, value in record.items()))
        if step % settings.checkpoint_every == 0 and step < settings.steps:
            save_state(output, step, fingerprint, model, optimiser, schedule, rng, noise_generator, history)
    progress.close()
    adversarial_history: list[dict] = []
    adjustments: list[dict] = []
    if recipe.adversarial.steps:
        from climgen.training.adversarial import adversarial_stage

        log(f"stage 2: {recipe.adversarial.steps} adversarial steps")
        adversarial_history, adjustments = adversarial_stage(
            model, sampler, windows, recipe.adversarial, rng, device, content_loss, log, recipe.precision
        )
    metadata = {
        **checkpoint_metadata(recipe, device, real_sources),
        "validation": history,
        "adversarial_validation": adversarial_history,
        "feedback_adjustments": adjustments,
        "stages": ["pretrain"] * bool(settings.steps) + ["adversarial"] * bool(recipe.adversarial.steps),
        "initialised_from": initial,
    }
    path = save_checkpoint(model, output, "amsgm", metadata)
    clear_state(output)
    return path

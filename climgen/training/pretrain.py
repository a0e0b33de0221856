"""Stage 1 of training: pre-train the generator with content losses (L1 + MS-SSIM).

This is the only place (with the later training stages) where optimisers exist.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from pytorch_msssim import ms_ssim

from climgen.errors import ModelError
from climgen.models.checkpoint import save_checkpoint
from climgen.models.generator import AdaptiveMultiScaleGenerator, bicubic_upsample, coarsen
from climgen.training.common import (
    autocast,
    checkpoint_metadata,
    draw_batch,
    field_validation_windows,
    real_pool_of,
    start_loop,
    start_run,
    training_progress,
)
from climgen.training.data import SampleGenerator
from climgen.training.recipe import TrainRecipe

MSSSIM_WEIGHTS = (0.3, 0.4, 0.3)  # three scales: crops of 64 cells are too small for five
MSSSIM_WINDOW = 3  # pytorch-msssim asserts side > (window - 1) * 16 whatever the scale count


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
    real_pool, real_sources = real_pool_of(recipe)
    sampler = SampleGenerator(
        recipe.data.crop_size, covariate_slots, real_pool, recipe.data.real_fraction, recipe.data.large_scale_covariate_share
    )
    return sampler, field_validation_windows(recipe, recipe.data.crop_size), real_sources


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
    generator = torch.Generator().manual_seed(0)  # on the CPU: the same validation on any device
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
        return AdaptiveMultiScaleGenerator(recipe.model.generator_config()).to(device), None
    from climgen.models.checkpoint import SHIPPED, load_checkpoint

    source = recipe.init_from if recipe.init_from in SHIPPED else recipe.resolve(recipe.init_from)
    checkpoint = load_checkpoint(source)
    if checkpoint.architecture != "amsgm":
        raise ModelError(f"init_from {recipe.init_from!r} is a {checkpoint.architecture} model, not a multi-branch one")
    model = AdaptiveMultiScaleGenerator(checkpoint.module.config)
    model.load_state_dict(checkpoint.module.state_dict())
    return model.to(device), f"{checkpoint.name} (sha256 {checkpoint.sha256})"


def pretrain(recipe: TrainRecipe, log=print) -> Path:
    """Train (or fine-tune, with ``init_from``) a generator as the recipe says and save it.

    Every ``checkpoint_every`` steps the full training state is saved beside the output; run
    the same recipe again after an interruption and it continues from there, ending with the
    same weights as an uninterrupted run. Returns the weights path.
    """
    from climgen.training.state import clear_state

    device, rng = start_run(recipe)
    model, initial = _initial_model(recipe, device)
    config = model.config
    sampler, windows, real_sources = training_data(recipe, config.covariate_slots)
    settings = recipe.pretrain
    loop = start_loop(recipe, model, rng, device, log)
    progress = training_progress(settings.steps, loop.first_step - 1, "pre-training")
    for step in range(loop.first_step, settings.steps + 1):
        target, covariates, mask = draw_batch(sampler, rng, settings.batch_size, device)
        stages = int(rng.integers(1, settings.max_stages + 1))
        with autocast(device, recipe.precision):
            outputs = model(coarsen(target, 2**stages), covariates, mask, stages=stages, generator=loop.noise)
        # losses in float32, as in the other loops (MS-SSIM subtracts squared means from filtered squares)
        loss = content_loss([output.float() for output in outputs], target, settings.msssim_weight)
        progress.update(1)
        loop.step(model, loss)
        if step % settings.validate_every == 0 or step == settings.steps:
            scores = validate(model, windows, device)
            loop.record(
                {
                    "step": step,
                    "loss": round(loss.item(), 5),
                    **scores,
                    "seconds": round(loop.seconds_before + loop.elapsed(), 1),
                },
                log,
            )
        loop.save_if_due(step, settings, model, rng)
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
        "validation": loop.history,
        "adversarial_validation": adversarial_history,
        "feedback_adjustments": adjustments,
        "stages": ["pretrain"] * bool(settings.steps) + ["adversarial"] * bool(recipe.adversarial.steps),
        "initialised_from": initial,
    }
    path = save_checkpoint(model, loop.output, "amsgm", metadata)
    clear_state(loop.output)
    return path

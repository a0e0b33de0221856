"""Training of the hierarchical generator: one model for the best estimate and for samples.

Each step draws a batch of crops (the real corpus, :mod:`climgen.training.corpus`, and
generated fields with covariates), coarsens it by 2 to the power of 1 to ``max_stages`` and
refines it back. Two kinds of
step alternate:

- **chained**: the stages run as they will at inference, each from the previous one's mean;
  the mean head learns from the absolute error (in units of the crop's spread) plus the
  squared error of the detail (in units of the detail's own spread);
- **teacher-forced**: each stage starts from the truth averaged to its input grid. The mean
  head learns as above; the sample head, on the same features held fixed, learns from the fair
  CRPS of two members drawn with different noise, which is lowest when members are draws from
  the distribution the truth comes from. So sampling never moves the best estimate.

Missing cells (land in ocean fields) are filled from the nearest valid cell in the coarse
input, as the pipeline fills them, and left out of every loss.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from climgen.errors import ModelError
from climgen.models.blocks import standard_normal
from climgen.models.generator import bicubic_upsample, magnitude_scale, masked_coarsen
from climgen.models.hierarchical import HierarchicalGenerator
from climgen.training.corpus import CorpusSampler, load_corpus
from climgen.training.data import SampleGenerator
from climgen.training.recipe import TrainRecipe

UNRELATED_COVARIATE_SHARE = 0.2
"""Share of corpus crops given an unrelated covariate, so the model learns to leave it be."""
MIN_VALID_SHARE = 0.7
"""Least share of valid cells in a crop (and a validation window) of a real field with missing
cells (land in an ocean field), where a recipe has no corpus section to say."""
FOLLOWING_COVARIATE_SHARE = 0.3
"""Share of corpus crops whose fine detail is made to follow a terrain covariate below a random
scale (:func:`follow_terrain`), as temperature follows elevation by its lapse rate."""


def follow_terrain(target: np.ndarray, valid: np.ndarray, terrain: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``target`` plus the terrain's departure from its own Gaussian smoothing (2 to 12 cells),
    scaled to 0.3 to 2 times the target's spread with either sign: a real field whose detail
    below that scale follows the covariate, as near-surface temperature follows the terrain."""
    from scipy import ndimage

    departure = terrain - ndimage.gaussian_filter(terrain, rng.uniform(2.0, 12.0), mode="reflect")
    spread = float(np.nanstd(target[valid > 0])) or 1.0
    strength = rng.uniform(0.3, 2.0) * rng.choice([-1.0, 1.0]) * spread / (departure.std() + 1e-12)
    return target + strength * departure


class MixedBatches:
    """Batches of (target, mask, covariates, covariate mask) tensors: corpus crops with
    probability ``corpus.share`` (NaN where missing), else generated fields and the recipe's
    real fields with their covariates (:class:`~climgen.training.data.SampleGenerator`)."""

    def __init__(self, recipe: TrainRecipe, covariate_slots: int, real_pool=None):
        data = recipe.data
        self.size = data.crop_size
        self.slots = covariate_slots
        self.generated = SampleGenerator(
            data.crop_size, covariate_slots, real_pool, data.real_fraction, data.large_scale_covariate_share
        )
        self.corpus = None
        self.corpus_share = 0.0
        self.description: list = []
        if data.corpus is not None:
            corpus = load_corpus(recipe.resolve(data.corpus.root), "train")
            self.corpus = CorpusSampler(
                corpus, data.crop_size, data.corpus.coarser_share, data.corpus.min_valid, data.corpus.group_weights
            )
            # the fields trained on: a group whose fields a crop does not fit is not among them
            self.description = [line for line in corpus.describe() if line.split(":")[0] not in self.corpus.left_out]
            self.corpus_share = data.corpus.share

    def sample(self, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
        size, slots = self.size, self.slots
        if self.corpus is None or rng.random() >= self.corpus_share:
            target, covariates, covariate_mask = self.generated(rng)  # real fields may have missing cells
            return target, np.isfinite(target).astype(target.dtype), covariates, covariate_mask
        target, mask = self.corpus(rng)
        covariates = np.zeros((slots, size, size))
        covariate_mask = np.zeros((slots, size, size))
        draw = rng.random()
        if slots and draw < UNRELATED_COVARIATE_SHARE + FOLLOWING_COVARIATE_SHARE:
            slot = rng.integers(slots)
            covariates[slot], covariate_mask[slot] = self.generated.terrain_like(rng), 1.0
            if draw >= UNRELATED_COVARIATE_SHARE:
                target = follow_terrain(target, mask, covariates[slot], rng)
        turns, flip = int(rng.integers(4)), rng.random() < 0.5
        arrays = []
        for values in (target, mask, covariates, covariate_mask):
            values = np.rot90(values, turns, axes=(-2, -1))
            arrays.append(np.ascontiguousarray(values[..., ::-1] if flip else values))
        return tuple(arrays)

    def __call__(self, rng: np.random.Generator, count: int, device: torch.device) -> tuple[torch.Tensor, ...]:
        samples = [self.sample(rng) for _ in range(count)]
        stacked = [torch.tensor(np.stack(part), dtype=torch.float32, device=device) for part in zip(*samples, strict=True)]
        target, mask, covariates, covariate_mask = stacked
        return torch.nan_to_num(target[:, None]), mask[:, None], covariates, covariate_mask


def coarse_input(target: torch.Tensor, mask: torch.Tensor, factor: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The block mean of the valid cells, missing blocks filled from the nearest valid one
    (as :func:`climgen.refine.fill_nearest` fills the pipeline's input), and the share of
    valid cells in each block."""
    from climgen.refine import fill_nearest

    values, weight = masked_coarsen(target, mask, factor)
    if bool((weight > 0).all()):
        return values, weight
    filled = values.detach().cpu().double().numpy().copy()
    missing = (weight == 0).cpu().numpy()
    for index in range(filled.shape[0]):
        filled[index, 0][missing[index, 0]] = np.nan
        filled[index, 0] = fill_nearest(filled[index, 0])
    return torch.as_tensor(filled, dtype=values.dtype, device=values.device), weight


class StepLoss:
    """The losses of one batch at ``stages`` stages, in units that do not depend on the field's."""

    def __init__(self, target: torch.Tensor, mask: torch.Tensor, stages: int, detail_mse_weight: float):
        self.target, self.mask, self.stages = target, mask, stages
        self.coarse, _ = coarse_input(target, mask, 2**stages)
        cells = mask.sum(dim=(-2, -1), keepdim=True).clamp_min(1)
        mean = (target * mask).sum(dim=(-2, -1), keepdim=True) / cells
        self.spread = torch.sqrt((((target - mean) * mask) ** 2).sum(dim=(-2, -1), keepdim=True) / cells) + 1e-6
        detail = (target - bicubic_upsample(self.coarse, 2**stages)) * mask
        self.detail_spread = torch.sqrt((detail**2).sum(dim=(-2, -1), keepdim=True) / cells) + 1e-6
        self.detail_mse_weight = detail_mse_weight
        self.truths = [masked_coarsen(target, mask, 2 ** (stages - stage)) for stage in range(1, stages + 1)]

    def stage_truth(self, stage: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The truth on stage ``stage``'s output grid and where it is whole (all cells valid)."""
        values, weight = self.truths[stage - 1]
        return values, (weight > 0.999).to(values.dtype)

    def content(self, output: torch.Tensor, stage: int) -> torch.Tensor:
        truth, valid = self.stage_truth(stage)
        error = output - truth
        absolute = (error.abs() / self.spread * valid).sum() / valid.sum().clamp_min(1)
        squared = ((error / self.detail_spread) ** 2 * valid).sum() / valid.sum().clamp_min(1)
        return absolute + self.detail_mse_weight * squared

    def crps(self, first: torch.Tensor, second: torch.Tensor, stage: int) -> torch.Tensor:
        """Fair CRPS of two members, in units of the crop's spread."""
        truth, valid = self.stage_truth(stage)
        score = 0.5 * ((first - truth).abs() + (second - truth).abs()) - 0.5 * (first - second).abs()
        return (score / self.spread * valid).sum() / valid.sum().clamp_min(1)


def chained_loss(model: HierarchicalGenerator, batch, loss: StepLoss) -> torch.Tensor:
    """Stages run from the coarse input, each from the previous mean, as at inference."""
    _, _, covariates, covariate_mask = batch
    outputs = model(loss.coarse, covariates, covariate_mask, stages=loss.stages)
    return sum(loss.content(output, stage) for stage, output in enumerate(outputs, start=1))


def teacher_forced_loss(
    model: HierarchicalGenerator, batch, loss: StepLoss, crps_weight: float, noise: torch.Generator
) -> torch.Tensor:
    """Each stage from the truth averaged to its input grid: content loss of the mean, and the
    fair CRPS of two samples drawn on the same features held fixed."""
    target, mask, covariates, covariate_mask = batch
    network = model.stage_network
    total = target.new_zeros(())
    for stage in range(1, loss.stages + 1):
        down = 2 ** (loss.stages - stage + 1)
        field = loss.coarse if stage == 1 else coarse_input(target, mask, down)[0]
        scale = magnitude_scale(field)
        stage_cov = stage_mask = None
        if covariates is not None:
            stage_cov, stage_mask = masked_coarsen(covariates, covariate_mask, down // 2)
        inputs, std = model.stage_inputs(field * scale, stage_cov, stage_mask)
        features = network.features(inputs)
        mean_detail = network.mean(features)[..., 1:-1, 1:-1]
        total = total + loss.content(model.compose(field * scale, std, mean_detail) / scale, stage)
        if crps_weight > 0:
            members = []
            for _ in range(2):
                shape = (field.shape[0], 1, 2 * field.shape[-2], 2 * field.shape[-1])
                draw = standard_normal(shape, noise, field.float())
                detail = mean_detail.detach() + network.sample(features.detach(), draw)
                members.append(model.compose(field * scale, std, detail) / scale)
            total = total + crps_weight * loss.crps(*members, stage)
    return total


def validation_windows(
    recipe: TrainRecipe, size: int = 64, per_field: int = 6
) -> list[tuple[str, np.ndarray, np.ndarray | None]]:
    """Fixed (group, window, covariate) triples of the corpus's validation split: up to
    ``per_field`` windows per field, each with at least 70% valid cells, spread evenly over the
    field (the same every run), without covariates; without a corpus, windows of the recipe's
    ``validation_fields`` with their covariates, as the fine-tune trained with them."""
    if recipe.data.corpus is None:  # a fine-tuning recipe: its own validation fields
        from climgen.training.common import field_validation_pairs

        return [("validation", *pair) for pair in field_validation_pairs(recipe, size, MIN_VALID_SHARE)]
    windows = []
    for item in load_corpus(recipe.resolve(recipe.data.corpus.root), "validation").fields:
        slices = item.slices
        if min(slices.shape[-2:]) < size:
            continue
        found = []
        for index in np.linspace(0, slices.shape[0] - 1, 3).astype(int):
            for y0 in range(0, slices.shape[1] - size + 1, size):
                for x0 in range(0, slices.shape[2] - size + 1, size):
                    window = slices[index, y0 : y0 + size, x0 : x0 + size]
                    if np.isfinite(window).mean() >= 0.7:
                        found.append(window)
        step = max(1, len(found) // per_field)
        windows += [(item.group, window.astype(np.float64), None) for window in found[::step][:per_field]]
    return windows


@torch.no_grad()
def validate(
    model: HierarchicalGenerator,
    windows: list[tuple[str, np.ndarray, np.ndarray | None]],
    device,
    factor: int = 4,
    members: int = 4,
) -> dict:
    """On the validation (group, window, covariate or None) triples at ``factor``: the best
    estimate's RMSE over bicubic's (mean over groups of each group's pooled ratio), and of
    ``members`` samples the CRPS over the best estimate's MAE and the spread over the
    members' mean's RMSE (pooled). Windows with a covariate are refined with it."""
    if not windows:
        return {}
    model.eval()
    stages = factor.bit_length() - 1
    truth = torch.tensor(np.stack([window for _, window, _ in windows]), dtype=torch.float32, device=device)[:, None]
    mask = torch.isfinite(truth).to(truth.dtype)
    truth = torch.nan_to_num(truth)
    coarse, weight = coarse_input(truth, mask, factor)
    scored = mask * (F.interpolate(weight, scale_factor=factor, mode="nearest") > 0)
    covariates = covariate_mask = None
    if any(covariate is not None for _, _, covariate in windows):
        given = np.stack([np.full(window.shape, np.nan) if covariate is None else covariate for _, window, covariate in windows])
        covariates = torch.tensor(given, dtype=torch.float32, device=device)[:, None]
        covariate_mask = torch.isfinite(covariates).to(covariates.dtype)
        covariates = torch.nan_to_num(covariates)
    best = model(coarse, covariates, covariate_mask, stages=stages)[-1]
    bicubic = bicubic_upsample(coarse, factor)
    generator = torch.Generator().manual_seed(0)  # on the CPU: the same validation on any device
    samples = torch.stack(
        [model(coarse, covariates, covariate_mask, stages=stages, generator=generator)[-1] for _ in range(members)]
    )
    groups = np.array([group for group, _, _ in windows])

    def pooled(values: torch.Tensor, rows) -> float:
        return float((values[rows] * scored[rows]).sum() / scored[rows].sum())

    ratios = []
    for group in sorted(set(groups)):
        rows = torch.as_tensor(groups == group, device=device)
        ratios.append(np.sqrt(pooled((best - truth) ** 2, rows) / pooled((bicubic - truth) ** 2, rows)))
    everything = torch.ones(len(windows), dtype=torch.bool, device=device)
    skill = (samples - truth).abs().mean(0)
    spread_pairs = (samples[:, None] - samples[None]).abs().mean((0, 1))
    crps = pooled(skill - 0.5 * spread_pairs * members / (members - 1), everything)
    spread = pooled(samples.var(0, unbiased=True), everything)
    model.train()
    return {
        "factor": factor,
        "ratio": float(np.mean(ratios)),
        "worst_group_ratio": float(np.max(ratios)),
        "crps_over_mae": crps / pooled((best - truth).abs(), everything),
        "spread_skill": float(np.sqrt(spread / pooled((samples.mean(0) - truth) ** 2, everything))),
    }


def train_hierarchical(recipe: TrainRecipe, log=print) -> Path:
    """Train (or fine-tune, with ``init_from``) the hierarchical generator as ``recipe`` says
    and save it; resumable like :func:`climgen.training.pretrain.pretrain`."""
    from climgen.models.checkpoint import save_checkpoint
    from climgen.training.common import checkpoint_metadata, real_pool_of, start_loop, start_run, training_progress
    from climgen.training.state import clear_state

    device, rng = start_run(recipe)
    model, initial = _initial_model(recipe, device)
    real_pool, real_sources = real_pool_of(recipe, _min_valid(recipe))
    batches = MixedBatches(recipe, model.config.covariate_slots, real_pool)
    windows = validation_windows(recipe)
    wide_windows = [item for item in windows if min(item[1].shape) >= 64]  # 8 x 8 coarse cells at x8
    settings = recipe.pretrain
    loop = start_loop(recipe, model, rng, device, log)
    progress = training_progress(settings.steps, loop.first_step - 1, "training")
    for step in range(loop.first_step, settings.steps + 1):
        batch = batches(rng, settings.batch_size, device)
        stages = int(rng.integers(1, settings.max_stages + 1))
        loss = StepLoss(batch[0], batch[1], stages, settings.detail_mse_weight)
        if rng.random() < settings.teacher_forcing:
            value = teacher_forced_loss(model, batch, loss, settings.crps_weight, loop.noise)
        else:
            value = chained_loss(model, batch, loss)
        loop.step(model, value)
        progress.update(1)
        loop.running.append(value.item())
        if step % settings.validate_every == 0 or step == settings.steps:
            record = {"step": step, "loss": round(float(np.mean(loop.running)), 5), **validate(model, windows, device)}
            if settings.max_stages >= 3 and wide_windows:  # it trains the x8 chain: scored there too
                record["ratio_x8"] = validate(model, wide_windows, device, factor=8)["ratio"]
            record["seconds"] = round(loop.seconds_before + loop.elapsed(), 1)
            loop.running = []
            loop.record(record, log)
        loop.save_if_due(step, settings, model, rng)
    progress.close()
    metadata = checkpoint_metadata(recipe, device, real_sources)
    metadata["training_data"]["corpus"] = batches.description
    metadata |= {"validation": loop.history, "stages": ["pretrain"], "initialised_from": initial}
    path = save_checkpoint(model, loop.output, "hierarchical", metadata)
    clear_state(loop.output)
    return path


def _min_valid(recipe: TrainRecipe) -> float:
    """The least share of valid cells in a crop of a masked field: the corpus section's, else
    :data:`MIN_VALID_SHARE`."""
    return recipe.data.corpus.min_valid if recipe.data.corpus is not None else MIN_VALID_SHARE


def _initial_model(recipe: TrainRecipe, device: torch.device) -> tuple[HierarchicalGenerator, str | None]:
    if recipe.init_from is None:
        return HierarchicalGenerator(recipe.model.generator_config()).to(device), None
    from climgen.models.checkpoint import SHIPPED, load_checkpoint

    checkpoint = load_checkpoint(recipe.init_from if recipe.init_from in SHIPPED else recipe.resolve(recipe.init_from))
    if not isinstance(checkpoint.module, HierarchicalGenerator):
        raise ModelError(f"init_from {recipe.init_from!r} is a {checkpoint.architecture} model, not a hierarchical one")
    model = HierarchicalGenerator(checkpoint.module.config)
    model.load_state_dict(checkpoint.module.state_dict())
    return model.to(device), f"{checkpoint.name} (sha256 {checkpoint.sha256})"

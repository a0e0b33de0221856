"""Training of the single-scale baselines (``baseline:`` in a recipe): SRGAN-like GAN and
conditional VAE, on the same data, crops and validation as the adaptive generator.

GAN: scale-free L1 + MS-SSIM content loss plus a hinge adversarial loss from the same
multi-scale patch discriminator stage 2 uses. VAE: the same content loss on the decoding of
the encoder's sample, plus a KL term towards the standard normal prior.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from climgen.errors import ConfigError
from climgen.models.baselines import BaselineConfig, ConditionalVAE, SingleScaleGenerator
from climgen.models.blocks import standard_normal
from climgen.models.checkpoint import save_checkpoint
from climgen.models.discriminator import MultiScaleDiscriminator
from climgen.models.generator import bicubic_upsample, coarsen
from climgen.training.common import (
    autocast,
    check_finite,
    checkpoint_metadata,
    draw_batch,
    pick_device,
    training_progress,
)
from climgen.training.pretrain import content_loss, training_data, validate
from climgen.training.recipe import TrainRecipe


def train_baseline(recipe: TrainRecipe, log=print) -> Path:
    """Train the recipe's ``baseline`` (srgan or cvae) and save it; returns the weights path."""
    settings = recipe.baseline
    if recipe.threads:
        torch.set_num_threads(recipe.threads)
    device = pick_device(recipe.device)
    torch.manual_seed(recipe.seed)
    rng = np.random.default_rng(recipe.seed)
    config = BaselineConfig(settings.factor, settings.channels, settings.blocks, recipe.model.covariate_slots)
    initial = None
    if recipe.init_from:  # fine-tune a trained baseline of the same kind
        from climgen.models.checkpoint import SHIPPED, load_checkpoint

        checkpoint = load_checkpoint(recipe.init_from if recipe.init_from in SHIPPED else recipe.resolve(recipe.init_from))
        if checkpoint.architecture != settings.kind:
            raise ConfigError(f"init_from {recipe.init_from!r} is a {checkpoint.architecture}, not a {settings.kind}")
        config, initial = checkpoint.module.config, f"{checkpoint.name} (sha256 {checkpoint.sha256})"
    model = (SingleScaleGenerator if settings.kind == "srgan" else ConditionalVAE)(config).to(device)
    if recipe.init_from:
        model.load_state_dict(checkpoint.module.state_dict())
    sampler, windows, real_sources = training_data(recipe, config.covariate_slots)
    optimiser = torch.optim.AdamW(model.parameters(), lr=settings.learning_rate, weight_decay=1e-4)
    discriminator = discriminator_optimiser = None
    if settings.kind == "srgan":
        discriminator = MultiScaleDiscriminator(settings.discriminator_channels).to(device)
        discriminator_optimiser = torch.optim.Adam(discriminator.parameters(), lr=2 * settings.learning_rate, betas=(0.5, 0.9))
    noise_generator = torch.Generator().manual_seed(recipe.seed)  # on the CPU: the same draws on any device
    history: list[dict] = []
    started = time.perf_counter()
    progress = training_progress(settings.steps, 0, settings.kind)
    for step in range(1, settings.steps + 1):
        target, covariates, mask = draw_batch(sampler, rng, settings.batch_size, device)
        coarse = coarsen(target, config.factor)
        with autocast(device, recipe.precision):
            if settings.kind == "cvae":
                mu, log_variance = model.encode(target, coarse)
                noise = standard_normal(mu.shape, noise_generator, mu)
                latent = mu + torch.exp(0.5 * log_variance) * noise
            else:
                latent = model.latent_from(coarse, None, noise_generator)
            fake = model.decode(coarse, covariates, mask, latent).float()
        loss = content_loss([fake], target, settings.msssim_weight)
        if settings.kind == "cvae":
            kl = 0.5 * (mu.float() ** 2 + log_variance.float().exp() - 1 - log_variance.float()).mean()
            loss = loss + settings.kl_weight * kl
        else:
            upsampled = bicubic_upsample(coarse, config.factor)
            real = discriminator(target, upsampled, coarse)
            judged = discriminator(fake.detach(), upsampled, coarse)
            loss_d = sum(F.relu(1 - r).mean() + F.relu(1 + f).mean() for (r, _), (f, _) in zip(real, judged, strict=True))
            discriminator_optimiser.zero_grad(set_to_none=True)
            loss_d.backward()
            discriminator_optimiser.step()
            loss = loss - settings.adversarial_weight * sum(f.mean() for f, _ in discriminator(fake, upsampled, coarse))
        optimiser.zero_grad(set_to_none=True)
        check_finite(loss)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimiser.step()
        progress.update(1)
        if step % settings.validate_every == 0 or step == settings.steps:
            scores = validate(model, windows, device, stages=config.stages)
            record = {"step": step, "loss": round(loss.item(), 5), **scores, "seconds": round(time.perf_counter() - started, 1)}
            history.append(record)
            log(f"{settings.kind} " + " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()))
    progress.close()
    metadata = {
        **checkpoint_metadata(recipe, device, real_sources),
        "validation": history,
        "stages": [settings.kind],
        "initialised_from": initial,
    }
    return save_checkpoint(model, recipe.resolve(recipe.output), settings.kind, metadata)

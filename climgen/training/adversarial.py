"""Stage 2 of training: adversarial refinement with a feedback controller.

The generator keeps its content losses and adds a hinge adversarial loss from a multi-scale
patch discriminator, a feature-matching loss, a spectral (FFT amplitude) loss and, when
asked, an ensemble loss (fair CRPS of two members). After each
validation a :class:`FeedbackController` reads the measured quality (RMSE against bicubic, top-
octave spectral error, discriminator accuracy) and adjusts the loss weights and the
discriminator's learning rate; every adjustment is logged and saved with the checkpoint.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from climgen.models.discriminator import MultiScaleDiscriminator
from climgen.models.generator import bicubic_upsample, coarsen


def spectral_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of log FFT amplitudes (scale-free: divided by the target's std)."""
    scale = target.std(dim=(-2, -1), keepdim=True) + 1e-6
    amplitude = lambda x: torch.log1p(torch.fft.rfft2((x - x.mean(dim=(-2, -1), keepdim=True)) / scale).abs())  # noqa: E731
    return F.l1_loss(amplitude(prediction), amplitude(target))


def ensemble_loss(first: torch.Tensor, second: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Fair CRPS of a two-member ensemble, divided by the target's std (scale-free): the mean
    error of the members less half their distance, lowest when members are independent draws
    from the distribution the truth comes from."""
    scale = target.std(dim=(-2, -1), keepdim=True) + 1e-6
    error = 0.5 * ((first - target).abs() + (second - target).abs())
    return ((error - 0.5 * (first - second).abs()) / scale).mean()


def top_octave_error(prediction: torch.Tensor, target: torch.Tensor) -> float:
    """|log10| ratio of predicted to true power in the upper half of wavenumbers."""

    def power(x):
        spectrum = torch.fft.fft2(x - x.mean(dim=(-2, -1), keepdim=True)).abs() ** 2
        ny, nx = x.shape[-2:]
        ky = torch.fft.fftfreq(ny).abs()[:, None] * 2
        kx = torch.fft.fftfreq(nx).abs()[None, :] * 2
        return spectrum[..., torch.maximum(ky, kx) > 0.5].mean()

    return float(torch.log10(power(prediction) / power(target)).abs())


@dataclass
class FeedbackController:
    """Adjusts loss weights and the discriminator learning rate from validation scores.

    Rules (each change is logged): if RMSE against bicubic worsens by more than ``tolerance``
    relative to the start of the stage, halve the adversarial and spectral weights; else if the
    top-octave spectral error is above ``spectral_target``, raise them by half; keep the
    discriminator's accuracy between 0.55 and 0.9 by scaling its learning rate.
    """

    adversarial: float = 0.01
    feature_matching: float = 0.1
    spectral: float = 0.05
    tolerance: float = 0.02
    spectral_target: float = 0.1
    baseline_ratio: float | None = None
    adjustments: list[dict] = field(default_factory=list)

    def update(
        self, step: int, ratio: float, spectral_error: float, discriminator_accuracy: float, discriminator_optimiser, log
    ) -> None:
        if self.baseline_ratio is None:
            self.baseline_ratio = ratio
            return
        changes = {}
        if ratio > self.baseline_ratio * (1 + self.tolerance):
            changes["adversarial"] = self.adversarial * 0.5
            changes["spectral"] = self.spectral * 0.5
            reason = f"RMSE ratio {ratio:.4f} worse than {self.baseline_ratio:.4f} by more than {self.tolerance:.0%}"
        elif spectral_error > self.spectral_target:
            changes["adversarial"] = min(self.adversarial * 1.5, 1.0)
            changes["spectral"] = min(self.spectral * 1.5, 1.0)
            reason = f"top-octave spectral error {spectral_error:.3f} above {self.spectral_target}"
        else:
            reason = ""
        learning_rate = discriminator_optimiser.param_groups[0]["lr"]
        if discriminator_accuracy > 0.9:
            changes["discriminator_lr"] = learning_rate * 0.5
            reason += f"; discriminator accuracy {discriminator_accuracy:.2f} > 0.9"
        elif discriminator_accuracy < 0.55:
            changes["discriminator_lr"] = learning_rate * 1.5
            reason += f"; discriminator accuracy {discriminator_accuracy:.2f} < 0.55"
        for key, value in changes.items():
            if key == "discriminator_lr":
                for group in discriminator_optimiser.param_groups:
                    group["lr"] = value
            else:
                setattr(self, key, value)
        if changes:
            record = {"step": step, "reason": reason.strip("; "), **{k: round(v, 6) for k, v in changes.items()}}
            self.adjustments.append(record)
            log("feedback: " + record["reason"] + " -> " + ", ".join(f"{k}={v:.4g}" for k, v in changes.items()))


@torch.no_grad()
def _validate(model, discriminator, windows: list[np.ndarray], device, stages: int = 2) -> dict:
    if not windows:
        return {}
    model.eval()
    truth = torch.tensor(np.stack(windows), dtype=torch.float32, device=device)[:, None]
    coarse = coarsen(truth, 2**stages)
    predicted = model(coarse, stages=stages, generator=torch.Generator().manual_seed(0))[-1]
    upsampled = bicubic_upsample(coarse, 2**stages)
    real = discriminator(truth, upsampled, coarse)
    fake = discriminator(predicted, upsampled, coarse)
    accuracy = float(
        np.mean([((r > 0).float().mean() + (f < 0).float().mean()).item() / 2 for (r, _), (f, _) in zip(real, fake, strict=True)])
    )
    model.train()
    rmse = torch.sqrt(((predicted - truth) ** 2).mean()).item()
    rmse_bicubic = torch.sqrt(((upsampled - truth) ** 2).mean()).item()
    return {
        "ratio": rmse / rmse_bicubic,
        "spectral_error": top_octave_error(predicted, truth),
        "discriminator_accuracy": accuracy,
    }


def adversarial_stage(
    model, sampler, windows, settings, rng, device, content_loss, log=print, precision: str = "float32"
) -> tuple[list[dict], list[dict]]:
    """Run stage 2 on ``model`` in place; returns (validation history, controller adjustments).
    ``precision``: the generator's forward passes in float32 or under bf16 autocast."""
    discriminator = MultiScaleDiscriminator(settings.discriminator_channels).to(device)
    generator_optimiser = torch.optim.Adam(model.parameters(), lr=settings.learning_rate, betas=(0.5, 0.9))
    discriminator_optimiser = torch.optim.Adam(
        discriminator.parameters(), lr=settings.discriminator_learning_rate, betas=(0.5, 0.9)
    )
    controller = FeedbackController(
        settings.adversarial_weight,
        settings.feature_matching_weight,
        settings.spectral_weight,
        settings.tolerance,
        settings.spectral_target,
    )
    noise_generator = torch.Generator().manual_seed(int(rng.integers(2**31)))  # on the CPU: any device, same draws
    history = []
    scores = _validate(model, discriminator, windows, device)
    if scores:
        if settings.feedback:
            controller.update(
                0, scores["ratio"], scores["spectral_error"], scores["discriminator_accuracy"], discriminator_optimiser, log
            )
        history.append({"step": 0, **scores})
    from climgen.training.common import autocast, check_finite, draw_batch, training_progress

    started = time.perf_counter()
    progress = training_progress(settings.steps, 0, "adversarial")
    for step in range(1, settings.steps + 1):
        progress.update(1)
        target, covariates, mask = draw_batch(sampler, rng, settings.batch_size, device)
        stages = int(rng.integers(1, settings.max_stages + 1))
        coarse = coarsen(target, 2**stages)
        upsampled = bicubic_upsample(coarse, 2**stages)
        with autocast(device, precision):  # float32 unless asked (see common.autocast)
            outputs = [o.float() for o in model(coarse, covariates, mask, stages=stages, generator=noise_generator)]
        fake = outputs[-1]
        # discriminator step (hinge)
        real_judgement = discriminator(target, upsampled, coarse)
        fake_judgement = discriminator(fake.detach(), upsampled, coarse)
        loss_d = sum(
            F.relu(1 - r).mean() + F.relu(1 + f).mean() for (r, _), (f, _) in zip(real_judgement, fake_judgement, strict=True)
        )
        discriminator_optimiser.zero_grad(set_to_none=True)
        loss_d.backward()
        discriminator_optimiser.step()
        # generator step
        fake_judgement = discriminator(fake, upsampled, coarse)
        adversarial = -sum(f.mean() for f, _ in fake_judgement)
        matching = sum(
            F.l1_loss(fake_feature, real_feature.detach())
            for (_, fake_features), (_, real_features) in zip(fake_judgement, real_judgement, strict=True)
            for fake_feature, real_feature in zip(fake_features, real_features, strict=True)
        )
        loss_g = (
            content_loss(outputs, target, settings.msssim_weight)
            + controller.adversarial * adversarial
            + controller.feature_matching * matching
            + controller.spectral * spectral_loss(fake, target)
        )
        if settings.ensemble_weight:
            with autocast(device, precision):
                second = model(coarse, covariates, mask, stages=stages, generator=noise_generator)[-1].float()
            loss_g = loss_g + settings.ensemble_weight * ensemble_loss(fake, second, target)
        generator_optimiser.zero_grad(set_to_none=True)
        check_finite(loss_g)
        loss_g.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        generator_optimiser.step()
        if step % settings.validate_every == 0 or step == settings.steps:
            scores = _validate(model, discriminator, windows, device)
            record = {
                "step": step,
                "loss_g": round(loss_g.item(), 5),
                "loss_d": round(loss_d.item(), 5),
                **scores,
                "seconds": round(time.perf_counter() - started, 1),
            }
            history.append(record)
            log("adversarial " + " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()))
            if scores and settings.feedback:
                controller.update(
                    step,
                    scores["ratio"],
                    scores["spectral_error"],
                    scores["discriminator_accuracy"],
                    discriminator_optimiser,
                    log,
                )
    progress.close()
    return history, controller.adjustments

"""Stage 2: discriminator, spectral loss, feedback controller, and a tiny adversarial run."""

import numpy as np
import pytest
import torch

from climgen.models.checkpoint import load_checkpoint
from climgen.models.discriminator import MultiScaleDiscriminator
from climgen.training.adversarial import FeedbackController, ensemble_loss, spectral_loss, top_octave_error


def test_discriminator_shapes_and_unit_invariance():
    discriminator = MultiScaleDiscriminator(channels=8)
    fine = torch.randn(2, 1, 32, 32)
    coarse = torch.nn.functional.avg_pool2d(fine, 4)
    upsampled = torch.nn.functional.interpolate(coarse, scale_factor=4, mode="bicubic")
    results = discriminator(fine, upsampled, coarse)
    assert [logits.shape[-1] for logits, _ in results] == [8, 4]
    shifted = discriminator(fine * 100 + 273, upsampled * 100 + 273, coarse * 100 + 273)
    torch.testing.assert_close(results[0][0], shifted[0][0], atol=1e-4, rtol=1e-4)


def test_spectral_loss_and_error_see_lost_detail():
    from climgen.testing import rough_field

    field = torch.tensor(rough_field((64, 64), seed=1, smoothness=2.0), dtype=torch.float32)[None, None]
    blurred = torch.nn.functional.avg_pool2d(field, 3, stride=1, padding=1)
    assert spectral_loss(field, field) == 0
    assert spectral_loss(blurred, field) > 0.05
    assert top_octave_error(field, field) == pytest.approx(0.0)
    assert top_octave_error(blurred, field) > 0.3


class _Optimiser:
    def __init__(self):
        self.param_groups = [{"lr": 1e-3}]


def test_ensemble_loss_prefers_members_that_spread_like_the_truth():
    # truth ~ N(0, 1) per cell: two independent draws from that distribution score better
    # (fair CRPS ~0.56) than two members collapsed on its mean (~0.80) or twice too wide
    generator = torch.Generator().manual_seed(0)
    truth, first, second = (torch.randn(4, 1, 64, 64, generator=generator) for _ in range(3))
    collapsed = torch.zeros_like(truth)
    calibrated = ensemble_loss(first, second, truth)
    assert calibrated < ensemble_loss(collapsed, collapsed, truth) - 0.15
    assert calibrated < ensemble_loss(3 * first, 3 * second, truth) - 0.15
    assert calibrated == pytest.approx(0.564, abs=0.02)  # 1/sqrt(pi): E|X-y| - E|X-X'|/2
    # scale-free and shift-free, like the content losses (one model serves K and m)
    scaled = ensemble_loss(290 + 5 * first, 290 + 5 * second, 290 + 5 * truth)
    assert scaled.item() == pytest.approx(calibrated.item(), rel=1e-3)


def test_feedback_controller_rules_and_log():
    lines = []
    controller = FeedbackController(adversarial=0.1, spectral=0.1, tolerance=0.02, spectral_target=0.1)
    optimiser = _Optimiser()
    controller.update(
        0, ratio=0.90, spectral_error=0.5, discriminator_accuracy=0.7, discriminator_optimiser=optimiser, log=lines.append
    )
    assert controller.baseline_ratio == 0.90 and not lines  # first reading sets the baseline
    controller.update(
        1, ratio=0.90, spectral_error=0.5, discriminator_accuracy=0.7, discriminator_optimiser=optimiser, log=lines.append
    )
    assert controller.adversarial == pytest.approx(0.15)  # detail missing: push harder
    controller.update(
        2, ratio=0.95, spectral_error=0.5, discriminator_accuracy=0.95, discriminator_optimiser=optimiser, log=lines.append
    )
    assert controller.adversarial == pytest.approx(0.075)  # quality fell: back off
    assert optimiser.param_groups[0]["lr"] == pytest.approx(5e-4)  # discriminator too strong
    assert len(controller.adjustments) == 2 and len(lines) == 2 and "RMSE ratio" in lines[1]


def test_tiny_adversarial_stage_from_the_default_model(tmp_path):
    from climgen.training.pretrain import pretrain
    from tests.test_training import _recipe

    recipe = _recipe(
        tmp_path,
        init_from="amsgm-multibranch",
        model={},
        pretrain={"steps": 0},
        adversarial={"steps": 4, "batch_size": 2, "validate_every": 2, "discriminator_channels": 8, "ensemble_weight": 1.0},
    )
    recipe = recipe.model_copy(update={"data": recipe.data.model_copy(update={"validation_fields": recipe.data.real_fields})})
    lines = []
    checkpoint = load_checkpoint(pretrain(recipe, log=lines.append))
    assert checkpoint.metadata["stages"] == ["adversarial"]
    assert checkpoint.metadata["recipe"]["adversarial"]["ensemble_weight"] == 1.0
    assert [entry["step"] for entry in checkpoint.metadata["adversarial_validation"]] == [0, 2, 4]
    assert any(line.startswith("adversarial step=4") for line in lines)
    assert np.isfinite([p.sum().item() for p in checkpoint.module.parameters()]).all()


def test_adversarial_stage_without_feedback_keeps_its_weights(tmp_path):
    from climgen.training.pretrain import pretrain
    from tests.test_training import _recipe

    settings = {"steps": 4, "batch_size": 2, "validate_every": 2, "discriminator_channels": 8, "feedback": False}
    settings |= {"tolerance": 0.0, "spectral_target": 0.0}  # with feedback, these would force adjustments
    recipe = _recipe(tmp_path, init_from="amsgm-multibranch", model={}, pretrain={"steps": 0}, adversarial=settings)
    recipe = recipe.model_copy(update={"data": recipe.data.model_copy(update={"validation_fields": recipe.data.real_fields})})
    lines = []
    checkpoint = load_checkpoint(pretrain(recipe, log=lines.append))
    assert checkpoint.metadata["feedback_adjustments"] == []
    assert not any(line.startswith("feedback:") for line in lines)
    assert [entry["step"] for entry in checkpoint.metadata["adversarial_validation"]] == [0, 2, 4]

"""Gaussian random fields with a power-law spectrum: the one generator behind generated
training fields (:mod:`climgen.training.data`) and test fixtures (:func:`climgen.testing.rough_field`)."""

from __future__ import annotations

import numpy as np


def gaussian_random_field(rng: np.random.Generator, shape: tuple[int, int], exponent: float) -> np.ndarray:
    """A periodic field of zero mean and unit variance whose power falls as ``k**-exponent``
    (2: rough, 4: smooth), its Fourier phases drawn from ``rng``."""
    ky = np.fft.fftfreq(shape[0])[:, None]
    kx = np.fft.fftfreq(shape[1])[None, :]
    wavenumber = np.hypot(ky, kx)
    wavenumber[0, 0] = np.inf  # no mean
    phases = rng.standard_normal(shape) + 1j * rng.standard_normal(shape)
    field = np.real(np.fft.ifft2(wavenumber ** (-exponent / 2) * phases))
    field -= field.mean()
    return field / (field.std() + 1e-12)

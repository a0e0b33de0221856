"""Generators: plain ``torch.nn.Module`` classes with no xarray inside.

Torch is imported lazily by the submodules; import them directly, e.g.
``from climgen.models.generator import AdaptiveMultiScaleGenerator``.
"""

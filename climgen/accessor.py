"""The ``.climgen`` accessor on xarray objects: a thin front that forwards to the pipeline."""

from __future__ import annotations

import xarray as xr


class _ClimgenAccessor:
    def __init__(self, obj: xr.Dataset | xr.DataArray):
        self._obj = obj

    def synthesize(
        self,
        factor: int = 4,
        variables=None,
        covariates=None,
        model: str = "default",
        seed: int = 0,
        members: int = 1,
        adaptive: bool = True,
        budget: float | None = None,
        quality: float | None = None,
        tolerance: float | None = None,
        **options,
    ) -> xr.Dataset:
        """Refine by ``factor``; see :func:`climgen.pipeline.synthesize`."""
        from climgen.pipeline import synthesize

        return synthesize(
            self._obj,
            factor=factor,
            variables=variables,
            covariates=covariates,
            model=model,
            seed=seed,
            members=members,
            adaptive=adaptive,
            budget=budget,
            quality=quality,
            tolerance=tolerance,
            **options,
        )

    def complexity(self, factor: int = 4, variables=None, covariates=None, tile_size: int | None = None) -> xr.DataArray:
        """Complexity score per tile on the coarse grid; see :func:`climgen.pipeline.complexity`."""
        from climgen.pipeline import complexity

        return complexity(self._obj, factor=factor, variables=variables, covariates=covariates, tile_size=tile_size)


@xr.register_dataset_accessor("climgen")
class ClimgenDatasetAccessor(_ClimgenAccessor):
    """``ds.climgen.synthesize(...)`` and ``ds.climgen.complexity(...)``."""


@xr.register_dataarray_accessor("climgen")
class ClimgenDataArrayAccessor(_ClimgenAccessor):
    """``da.climgen.synthesize(...)`` and ``da.climgen.complexity(...)``."""

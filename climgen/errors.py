"""User-facing errors and warnings.

Every error a user can cause derives from :class:`ClimgenError`, every warning of climgen's from
:class:`ClimgenWarning`. The CLI prints each as one line on stderr (and exits non-zero on an
error); the accessor and library raise and warn them unchanged.
"""

from __future__ import annotations

import os


class ClimgenError(Exception):
    """Base class of the errors a user can fix (bad input, bad option, missing file...)."""


class InputError(ClimgenError, ValueError):
    """The input data cannot be used as given (missing variable, bad coordinates...)."""


class GridError(InputError):
    """The spatial grid is not one climgen understands (no x/y axes, non-monotonic...)."""


class ConfigError(ClimgenError, ValueError):
    """An option or configuration value is invalid (bad factor, bad budget...)."""


class ModelError(ClimgenError):
    """A model checkpoint is missing, unsafe (pickle) or inconsistent with its config."""


class TrainingError(ClimgenError):
    """Training cannot go on or cannot be saved (it diverged, its saved state is unreadable)."""


class OutputExistsError(ClimgenError, FileExistsError):
    """The output path exists and ``overwrite`` was not requested."""


class OutputWriteError(ClimgenError, OSError):
    """The output could not be written (a full disk, a read-only folder); the job resumes."""


class OutputLockedError(ClimgenError):
    """Another climgen process is writing the same output (see :mod:`climgen.io.lock`)."""


class MissingDependencyError(ClimgenError, ImportError):
    """An optional dependency needed for this feature is not installed."""


class CredentialsError(ClimgenError):
    """No usable NASA Earthdata Login credentials (environment variables or ``.netrc``)."""


class ClimgenWarning(UserWarning):
    """Base class of climgen's warnings: something in the input or the job a user should know."""


class InputWarning(ClimgenWarning):
    """Part of the input is left aside (a variable off the grid, a covariate's missing cover)."""


_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep  # climgen's folder


def warn_user(message: str, category: type[Warning] = ClimgenWarning) -> None:
    """Warn at the first line outside climgen that led here (the user's call in a notebook
    or script, not climgen's own source), as ``warnings.warn`` with the right stacklevel."""
    import sys
    import warnings

    frame, level = sys._getframe(1), 2
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level if frame is not None else 2)

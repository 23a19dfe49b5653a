"""Exceptions for user errors.

Anything raised as a :class:`LiberoGymError` is the user's to fix (a bad id, a
missing asset folder, a corrupt dataset): the CLI prints its message on one line
and exits non-zero, without a traceback. Every other exception is a bug and keeps
its traceback.
"""

from __future__ import annotations


class LiberoGymError(Exception):
    """Base class of errors caused by user input or the user's machine set-up."""


class InvalidInputError(LiberoGymError, ValueError):
    """A value the user passed is not one of the valid choices."""


class AssetsNotFoundError(LiberoGymError, FileNotFoundError):
    """The folder LIBERO loads meshes and textures from is missing or incomplete."""


class DatasetError(LiberoGymError, ValueError):
    """A file is not a valid LIBERO-layout HDF5 dataset."""


class CheckpointError(LiberoGymError, ValueError):
    """A checkpoint is missing, corrupt, or belongs to another agent or env."""

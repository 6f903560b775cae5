"""Errors the CLI turns into one-line messages and exit codes."""

from __future__ import annotations


class AttnDeployError(Exception):
    """Base class. ``exit_code`` is what the CLI returns for it."""

    exit_code: int = 1


class InputError(AttnDeployError):
    """Bad usage or bad input (missing/corrupt file, wrong shape, unknown name): exit code 2.

    The message must say what to do about it.
    """

    exit_code = 2


class ParityError(AttnDeployError):
    """A parity gate failed: exit code 1."""

    exit_code = 1

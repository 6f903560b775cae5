"""Errors the library raises. Messages name the problem and what to do; only the CLI maps them to exit codes."""

from __future__ import annotations


class AttnDeployError(Exception):
    """Base class. ``exit_code`` is what the CLI returns for it."""

    exit_code: int = 1


class InputError(AttnDeployError):
    """Bad usage or bad input (missing/corrupt file, wrong shape, unknown name): exit code 2.

    The message must say what to do about it.
    """

    exit_code = 2


def first_line(error: BaseException, limit: int = 300) -> str:
    """The first non-empty line of ``error``'s message (its type name when the message is empty)."""
    for line in str(error).splitlines():
        if line.strip():
            return line.strip()[:limit]
    return type(error).__name__

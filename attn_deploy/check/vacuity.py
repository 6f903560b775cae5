"""Reference outputs a match proves little about: constant ones, and ones the input does not change.

An all-zero output (a randomly initialised torchvision ViT's, or a residual block whose gate is
still 0) matches any other all-zero output with cosine 1.0; an output that ignores the input
matches whatever computes the same constant. ``check`` still judges them, and says so.
"""

from __future__ import annotations

import numpy as np

from attn_deploy.runtime.base import Feeds


def constant_warning(reference: np.ndarray) -> str | None:
    """Why ``reference`` is constant (more than one value, all equal), else None."""
    values = np.asarray(reference)
    if values.size < 2 or (values.dtype.kind in "fc" and not np.all(np.isfinite(values))):
        return None
    first = values.flat[0]
    if not np.all(values == first):
        return None
    shown = f"{first:g}" if values.dtype.kind in "fc" else str(first)
    return f"the reference output is constant (every value is {shown}): a match proves little about the model"


def unchanged_warning(first: np.ndarray, second: np.ndarray) -> str | None:
    """Why the reference output is the same for two different inputs, else None."""
    a, b = np.asarray(first), np.asarray(second)
    if a.shape != b.shape or not np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"):
        return None
    return "the reference output is the same for two different inputs (it does not depend on them): a match proves little about the model"


def inputs_differ(first: Feeds, second: Feeds) -> bool:
    """True when some input of ``second`` differs from ``first``'s (so outputs may be compared)."""
    return any(name in second and not np.array_equal(value, second[name]) for name, value in first.items())


def output_warnings(reference_runs: list[Feeds], samples: list[Feeds], probe: tuple[Feeds, Feeds] | None = None) -> dict[str, str]:
    """One warning per reference output a match proves little about.

    ``reference_runs[i]`` are the reference's outputs on ``samples[i]``; ``probe`` is one more
    (input, outputs) pair from a different input, run when there is a single sample.
    """
    runs = list(zip(samples, reference_runs)) + ([probe] if probe is not None else [])
    if not runs:
        return {}
    first_input, first = runs[0]
    warnings: dict[str, str] = {}
    for name, value in first.items():
        warning = constant_warning(value)
        others = [out[name] for inputs, out in runs[1:] if name in out and inputs_differ(first_input, inputs)]
        if warning is None and others and all(unchanged_warning(value, other) for other in others):
            warning = unchanged_warning(value, others[0])
        if warning is not None:
            warnings[name] = warning
    return warnings

"""Error statistics between a reference output and a candidate output."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class ErrorStats:
    """Per-output comparison. Relative errors divide by ``max(|ref|, 1e-12)``;
    ``rel_to_max`` is the max abs error over max |reference|."""

    name: str
    shape_ref: tuple[int, ...]
    shape_out: tuple[int, ...]
    max_abs: float
    mean_abs: float
    median_abs: float
    p99_abs: float
    max_rel: float
    mean_rel: float
    median_rel: float
    p99_rel: float
    rel_to_max: float
    cosine: float
    nonfinite: int
    nonfinite_ref: int = 0

    @property
    def shapes_match(self) -> bool:
        return self.shape_ref == self.shape_out

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na == 0.0 and nb == 0.0:
        return 1.0
    if na == 0.0 or nb == 0.0:
        return 0.0
    return float(np.dot(a, b) / (na * nb))


def _nonfinite(a: np.ndarray) -> int:
    return int(a.size - np.count_nonzero(np.isfinite(a))) if a.dtype.kind in "fc" else 0


def _uniform(
    name: str, shape_ref: tuple[int, ...], shape_out: tuple[int, ...], error: float, cosine: float, nonfinite: int, nonfinite_ref: int
) -> ErrorStats:
    """Stats where every error statistic is ``error`` (shape mismatch: inf; empty outputs: 0)."""
    return ErrorStats(
        name, shape_ref, shape_out, max_abs=error, mean_abs=error, median_abs=error, p99_abs=error, max_rel=error,
        mean_rel=error, median_rel=error, p99_rel=error, rel_to_max=error, cosine=cosine, nonfinite=nonfinite,
        nonfinite_ref=nonfinite_ref,
    )


def error_stats(name: str, reference: np.ndarray, candidate: np.ndarray) -> ErrorStats:
    """Compare two arrays; mismatched shapes give infinite errors rather than an exception."""
    ref = np.asarray(reference)
    out = np.asarray(candidate)
    counts = {"nonfinite": _nonfinite(out), "nonfinite_ref": _nonfinite(ref)}
    if ref.shape != out.shape:
        return _uniform(name, ref.shape, out.shape, float("inf"), 0.0, **counts)
    r = ref.astype(np.float64).ravel()
    o = out.astype(np.float64).ravel()
    if r.size == 0:
        return _uniform(name, ref.shape, out.shape, 0.0, 1.0, **counts)
    diff = np.abs(r - o)
    diff[~np.isfinite(diff)] = np.inf
    rel = diff / np.maximum(np.abs(r), 1e-12)
    max_ref = float(np.max(np.abs(r[np.isfinite(r)]), initial=0.0))
    return ErrorStats(
        name=name,
        shape_ref=ref.shape,
        shape_out=out.shape,
        max_abs=float(diff.max()),
        mean_abs=float(diff.mean()),
        median_abs=float(np.median(diff)),
        p99_abs=float(np.percentile(diff, 99)),
        max_rel=float(rel.max()),
        mean_rel=float(rel.mean()),
        median_rel=float(np.median(rel)),
        p99_rel=float(np.percentile(rel, 99)),
        rel_to_max=float(diff.max() / max_ref) if max_ref > 0 else float(diff.max()),
        cosine=_cosine(np.nan_to_num(r), np.nan_to_num(o)),
        **counts,
    )


def compare_outputs(reference: dict[str, np.ndarray], candidate: dict[str, np.ndarray]) -> list[ErrorStats]:
    """Stats for every reference output; a missing candidate output is an error, not a skip."""
    missing = [n for n in reference if n not in candidate]
    if missing:
        raise KeyError(f"candidate lacks outputs {missing}; it has {list(candidate)}")
    return [error_stats(n, reference[n], candidate[n]) for n in reference]

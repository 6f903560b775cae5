"""Numerical parity between backends."""

from attn_deploy.check.stats import ErrorStats, compare_outputs, error_stats

__all__ = ["ErrorStats", "compare_outputs", "error_stats"]

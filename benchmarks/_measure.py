"""Memory helpers for the benchmark scripts (the package's; importing them does not load torch)."""

from attn_deploy.bench.memory import peak_rss_mb, reset_peak_rss, rss_mb

__all__ = ["peak_rss_mb", "reset_peak_rss", "rss_mb"]

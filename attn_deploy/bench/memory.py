"""Process memory from /proc (Linux): current RSS, and the peak since a reset."""

from __future__ import annotations

from pathlib import Path


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def rss_mb() -> float:
    """Resident set size now."""
    return _status_kb("VmRSS") / 1024


def peak_rss_mb() -> float:
    """Peak resident set size since the process started or since ``reset_peak_rss``."""
    return _status_kb("VmHWM") / 1024


def reset_peak_rss() -> bool:
    """Make the peak start again from the current RSS (Linux >= 4.0); False where not permitted."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True

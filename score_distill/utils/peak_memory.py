"""Peak resident memory of this process, per stage (Linux).

``/usr/bin/time`` gives one peak for a whole run; which stage reaches it is what sizing a machine (or a preset's
batch sizes) needs. Linux keeps the peak in ``VmHWM`` of ``/proc/self/status`` and resets it when ``5`` is written
to ``/proc/self/clear_refs``. Elsewhere (or where /proc is read-only) there is no figure: None.
"""

from __future__ import annotations

from pathlib import Path

_STATUS = Path("/proc/self/status")
_CLEAR = Path("/proc/self/clear_refs")


def reset_peak() -> bool:
    """Start a new peak from the current resident size; False where the platform cannot."""
    try:
        _CLEAR.write_text("5")
    except OSError:
        return False
    return True


def peak_rss_gb() -> float | None:
    """The peak resident size (GiB) since the last reset (or since the process started)."""
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 2**20, 2)
    except (OSError, ValueError, IndexError):
        return None
    return None

"""Peak resident memory of this process, for the benchmarks (Linux: /proc/self).

The refresh itself never measures memory: a benchmark passes :func:`stage_probe` as the refresh's
``stage_hook``, which resets the high-water mark before each stage and reads it after.
"""

from __future__ import annotations


def reset_peak_rss() -> bool:
    """Reset this process's peak resident set size (``5`` to /proc/self/clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def peak_rss_mib() -> float | None:
    """This process's peak resident set size since the last reset, in MiB (Linux only)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def stage_probe(peaks: dict[str, float | None]):
    """A refresh ``stage_hook`` that records each stage's peak memory (MiB) in ``peaks``."""
    measured = {}

    def hook(stage: str, when: str) -> None:
        if when == "before":
            measured[stage] = reset_peak_rss()
        elif measured.get(stage):
            peaks[stage] = peak_rss_mib()

    return hook

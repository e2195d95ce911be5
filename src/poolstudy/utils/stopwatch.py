"""Wall time per phase of a job, for metrics.json's ``time_breakdown_s``."""

from __future__ import annotations

import time


class PhaseStopwatch:
    """``lap(name)`` charges the time since the previous lap (or creation) to ``name``."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, phase: str) -> None:
        now = time.perf_counter()
        self.seconds[phase] = self.seconds.get(phase, 0.0) + now - self._last
        self._last = now

"""Per-channel rate limits (`rate: 10/s` in a channel's config), so a large batch does not trip the provider."""

from __future__ import annotations

import re
import threading
import time

_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(s|sec|second|m|min|minute|h|hour)\s*$")
_PER = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600}


class RateLimiter:
    """Spaces calls evenly: at most `per_second` a second, without bursts. No limit when 0."""

    def __init__(self, per_second: float, *, stop: threading.Event | None = None):
        self.interval = 1.0 / per_second if per_second > 0 else 0.0
        self._next = 0.0
        self._lock = threading.Lock()
        self._stop = stop

    @classmethod
    def parse(cls, text: str, *, stop: threading.Event | None = None) -> RateLimiter:
        if not text:
            return cls(0, stop=stop)
        m = _RATE.match(text)
        if not m:
            raise ValueError(f"`{text}` is not a rate: write it like `10/s` or `300/min`")
        return cls(float(m.group(1)) / _PER[m.group(2)], stop=stop)

    def wait(self) -> None:
        if not self.interval:
            return
        with self._lock:
            now = time.monotonic()
            at = max(now, self._next)
            self._next = at + self.interval
        delay = at - now
        if delay > 0:
            if self._stop is not None:
                self._stop.wait(delay)
            else:
                time.sleep(delay)

"""Bulk work over 100,000 tenants creates millions of short-lived objects without reference cycles;
Python's cycle collector would walk the growing heap again and again (half of planning's time,
measured). While such a step runs it is paused, and one collection runs at the end."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collector_paused() -> Iterator[None]:
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
            gc.collect()

"""nudger: friendly, person-signed reminders and nudges for Dutch housing corporations."""

from __future__ import annotations

__version__ = "0.1.0"

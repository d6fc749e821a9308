"""Status marks as plain text symbols: emoji (✅, ❌, ⏳…) render as empty boxes in a browser without an emoji font,
while these are in the ordinary fonts every system has (DejaVu, Liberation, Segoe UI, San Francisco)."""

from __future__ import annotations

OK = "✓"  # U+2713 CHECK MARK: text presentation
ERR = "✗"  # U+2717 BALLOT X
WARN = "⚠"  # U+26A0 without the emoji variation selector: drawn as text
WAIT = "…"  # queued, waiting its turn

"""Pure rules of the hybrid fan-out, shared by every adapter (no I/O here)."""

from __future__ import annotations


def is_celebrity(followers_count: int, threshold: int) -> bool:
    """Celebrities are pulled at read time instead of pushed at write time."""
    return followers_count >= threshold


"""64-bit, time-ordered ids (Snowflake layout), so that ordering by id is ordering by time.

    | 41 bits: ms since EPOCH_MS | 10 bits: node | 12 bits: sequence |

Ids travel as decimal strings in JSON because JavaScript numbers lose precision past 2**53.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone

EPOCH_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z
NODE_BITS = 10
SEQ_BITS = 12
MAX_NODE = (1 << NODE_BITS) - 1
MAX_SEQ = (1 << SEQ_BITS) - 1
MAX_ID = (1 << 63) - 1


class IdGenerator:
    """Thread-safe, strictly increasing within a process, even if the wall clock steps back.

    ``floor`` is the largest id already issued (read from the store at start), so a restart
    with a clock that went backwards still never reuses or reorders ids. The node field is
    never touched by the sequence: when a millisecond's 4096 sequence numbers are used up
    (or the clock is behind the last id), the generator moves on to the next millisecond,
    so two nodes can never issue the same id.
    """

    def __init__(self, node: int = 0, floor: int = 0) -> None:
        if not 0 <= node <= MAX_NODE:
            raise ValueError(f"node must be in 0..{MAX_NODE}")
        self._node = node
        # Start strictly after the floor's millisecond: ids from another node in that same
        # millisecond may be larger than any we could make in it.
        self._ms = (floor >> (NODE_BITS + SEQ_BITS)) if floor else -1
        self._seq = MAX_SEQ
        self._lock = threading.Lock()

    def next_id(self) -> int:
        with self._lock:
            ms = int(time.time() * 1000) - EPOCH_MS
            if ms > self._ms:
                self._ms, self._seq = ms, 0
            elif self._seq < MAX_SEQ:
                self._seq += 1
            else:  # sequence exhausted, or the clock is behind: borrow the next millisecond
                self._ms, self._seq = self._ms + 1, 0
            return (self._ms << (NODE_BITS + SEQ_BITS)) | (self._node << SEQ_BITS) | self._seq


def id_time(id_: int) -> datetime:
    """When an id was made (millisecond precision)."""
    ms = (id_ >> (NODE_BITS + SEQ_BITS)) + EPOCH_MS
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc)


def id_time_iso(id_: int) -> str:
    return id_time(id_).isoformat(timespec="milliseconds").replace("+00:00", "Z")


#: Digits of the largest id: a longer string is no id (and is not converted at all).
_MAX_ID_DIGITS = len(str(MAX_ID))


def parse_id(raw: object) -> int | None:
    """A positive 63-bit integer given as a string of ASCII digits (or an int), else None."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return raw if 0 < raw <= MAX_ID else None
    if not isinstance(raw, str) or not raw or len(raw) > _MAX_ID_DIGITS or not raw.isascii() or not raw.isdigit():
        return None
    value = int(raw)
    return value if 0 < value <= MAX_ID else None

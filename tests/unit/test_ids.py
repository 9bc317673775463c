"""Ids: 64-bit, time-ordered, strictly increasing per generator (threads, clock steps back),
and ``parse_id`` accepts only a positive 63-bit integer written in ASCII digits."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from datetime import datetime, timezone
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import homefeed.domain.ids as ids_mod
from homefeed.domain.ids import (
    EPOCH_MS,
    MAX_ID,
    MAX_NODE,
    NODE_BITS,
    SEQ_BITS,
    IdGenerator,
    id_time,
    id_time_iso,
    parse_id,
)

T0_MS = EPOCH_MS + 86_400_000  # one day after the id epoch


class FakeClock:
    """Stands in for the ``time`` module inside ``homefeed.domain.ids``. Keeps whole
    milliseconds (``ms``) and answers half a millisecond past them, so that float rounding
    never moves an id into the neighbouring millisecond."""

    def __init__(self, ms: int = T0_MS) -> None:
        self.ms = ms

    def time(self) -> float:
        return (self.ms + 0.5) / 1000


@contextmanager
def clock(ms: int = T0_MS):
    fake = FakeClock(ms)
    with mock.patch.object(ids_mod, "time", fake):
        yield fake


def ms_of(id_: int) -> int:
    return id_ >> (NODE_BITS + SEQ_BITS)


def node_of(id_: int) -> int:
    return (id_ >> SEQ_BITS) & MAX_NODE


# --------------------------------------------------------------------------------------------
# IdGenerator
# --------------------------------------------------------------------------------------------


def test_ids_strictly_increase_and_are_positive_63_bit():
    g = IdGenerator()
    ids = [g.next_id() for _ in range(20_000)]  # many per millisecond: the sequence is used
    assert all(0 < i <= MAX_ID for i in ids)
    assert all(a < b for a, b in zip(ids, ids[1:]))


def test_ids_strictly_increase_across_threads():
    g = IdGenerator(node=3)
    per_thread: list[list[int]] = [[] for _ in range(8)]
    start = threading.Barrier(8)

    def work(out: list[int]) -> None:
        start.wait()
        for _ in range(3000):
            out.append(g.next_id())

    threads = [threading.Thread(target=work, args=(out,)) for out in per_thread]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = [i for out in per_thread for i in out]
    assert len(set(everything)) == len(everything) == 24_000
    for out in per_thread:
        assert all(a < b for a, b in zip(out, out[1:]))
    # and the generator's next id is above all of them
    assert g.next_id() > max(everything)


def test_ids_are_time_ordered_and_carry_their_time():
    with clock() as c:
        g = IdGenerator()
        a = g.next_id()
        c.ms += 5
        b = g.next_id()
        c.ms += 3_600_000
        d = g.next_id()
    assert a < b < d
    assert ms_of(b) - ms_of(a) == 5
    assert id_time(a) == datetime(2024, 1, 2, tzinfo=timezone.utc)
    assert id_time(d) == datetime(2024, 1, 2, 1, 0, 0, 5000, tzinfo=timezone.utc)
    assert id_time_iso(a) == "2024-01-02T00:00:00.000Z"
    assert id_time_iso(d) == "2024-01-02T01:00:00.005Z"


def test_id_time_of_a_fresh_id_is_now():
    before = datetime.now(timezone.utc).timestamp()
    t = id_time(IdGenerator().next_id()).timestamp()
    after = datetime.now(timezone.utc).timestamp()
    assert before - 0.002 <= t <= after + 0.002


def test_ids_of_different_generators_order_by_time():
    with clock() as c:
        early = IdGenerator(node=MAX_NODE).next_id()
        c.ms += 1
        late = IdGenerator(node=0).next_id()
    assert early < late


def test_node_is_encoded_and_validated():
    with clock():
        for node in (0, 1, 517, MAX_NODE):
            assert node_of(IdGenerator(node=node).next_id()) == node
    for bad in (-1, MAX_NODE + 1):
        with pytest.raises(ValueError):
            IdGenerator(node=bad)


def test_clock_stepping_back_never_reorders_or_reuses():
    with clock() as c:
        g = IdGenerator()
        first = [g.next_id() for _ in range(5)]
        c.ms -= 3_600_000  # NTP stepped the clock back an hour
        later = [g.next_id() for _ in range(5)]
        c.ms += 3_600_000 + 10_000
        latest = g.next_id()
    seq = first + later + [latest]
    assert all(a < b for a, b in zip(seq, seq[1:]))
    assert ms_of(latest) == ms_of(first[0]) + 10_000


def test_floor_keeps_ids_above_those_issued_before_a_restart():
    with clock() as c:
        issued = IdGenerator().next_id()
        c.ms -= 60_000  # restarted with a clock a minute behind
        g = IdGenerator(floor=issued)
        assert g.next_id() > issued


@settings(max_examples=200, deadline=None)
@given(
    steps=st.lists(
        st.one_of(
            st.integers(-5_000_000, 5_000_000),  # clock jumps (ms), either way
            st.integers(-3, 3),  # and tiny ones
        ),
        max_size=60,
    ),
    burst=st.integers(1, 5000),
    node=st.integers(0, MAX_NODE),
)
def test_property_strictly_increasing_whatever_the_clock_does(steps, burst, node):
    with clock() as c:
        g = IdGenerator(node=node)
        last = 0
        for i, dt in enumerate(steps):
            c.ms += dt
            n = burst if i == 0 else 3
            for _ in range(n):
                nxt = g.next_id()
                assert last < nxt <= MAX_ID
                last = nxt


def test_generators_of_different_nodes_never_collide():
    with clock():
        g1, g2 = IdGenerator(node=1), IdGenerator(node=2)
        a = [g1.next_id() for _ in range(5000)]  # more than 4096 in one millisecond
        b = [g2.next_id() for _ in range(5000)]
    assert not set(a) & set(b)
    assert {node_of(i) for i in a} == {1}


# --------------------------------------------------------------------------------------------
# parse_id
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("1", 1),
        ("42", 42),
        (str(MAX_ID), MAX_ID),
        ("384203690136829952", 384203690136829952),
        (7, 7),
        (MAX_ID, MAX_ID),
    ],
)
def test_parse_id_accepts_positive_63_bit_integers(raw, expected):
    assert parse_id(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "0",
        "-1",
        "+1",
        " 1",
        "1 ",
        "1\n",
        "1.0",
        "1e3",
        "0x10",
        "1_000",
        "abc",
        "12a",
        str(MAX_ID + 1),
        "9" * 19,
        "1" + "0" * 19,
        "١٢",  # Arabic-Indic digits
        "１２",  # fullwidth digits
        "²",  # superscript two: str.isdigit() says yes
        "𝟏",  # mathematical bold one
        0,
        -1,
        MAX_ID + 1,
        True,
        False,
        1.0,
        None,
        b"1",
        ["1"],
    ],
)
def test_parse_id_rejects_everything_else(raw):
    assert parse_id(raw) is None


@given(st.integers(1, MAX_ID))
def test_parse_id_round_trips_every_valid_id(n):
    assert parse_id(str(n)) == n
    assert parse_id(n) == n


@given(st.one_of(st.integers(max_value=0), st.integers(min_value=MAX_ID + 1)))
def test_parse_id_rejects_out_of_range_integers(n):
    assert parse_id(n) is None
    assert parse_id(str(n)) is None


@given(st.text())
def test_parse_id_accepts_text_only_if_it_is_ascii_digits_in_range(s):
    got = parse_id(s)
    if got is not None:
        assert s.isascii() and s.isdigit() and 0 < int(s) <= MAX_ID and got == int(s)

"""The webhook rules that need no I/O: the retry schedule (N delays, N + 1 attempts, at most
10% jitter, fractions), signatures as the ``standardwebhooks`` library checks them, which
addresses may be reached, "committed after the subscription", and the SMTP URL."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook

from homefeed.adapters.smtp_mail import parse_smtp_url
from homefeed.config import Settings
from homefeed.domain.errors import InvalidInput
from homefeed.domain.webhooks import (address_allowed, committed_after, new_secret, parse_events,
                                      parse_retry_schedule, parse_target, retry_delay, signature_header)


def test_default_schedule_and_fractions() -> None:
    assert parse_retry_schedule("5s,5m,30m,2h,5h,10h,10h") == (5, 300, 1800, 7200, 18000, 36000, 36000)
    assert parse_retry_schedule("0.2s, 1.5m,.5s") == (0.2, 90.0, 0.5)
    for bad in ("", "5", "5x", "-1s", "1s,,2s", "s"):
        with pytest.raises(ValueError):
            parse_retry_schedule(bad)
    with pytest.raises(ValueError, match="webhook_retry_schedule"):
        Settings.from_env({"HOMEFEED_WEBHOOK_RETRY_SCHEDULE": "soon"})


@given(st.lists(st.floats(min_value=0.001, max_value=1e6), min_size=1, max_size=12), st.integers(0, 2**32))
def test_n_delays_mean_n_plus_one_attempts_with_at_most_ten_percent_jitter(delays: list[float], seed: int) -> None:
    rng = random.Random(seed)
    attempts = 1
    while (d := retry_delay(delays, attempts, rng)) is not None:
        base = delays[attempts - 1]
        assert base * 0.9 - 1e-9 <= d <= base * 1.1 + 1e-9
        attempts += 1
    assert attempts == len(delays) + 1


@given(st.binary(max_size=2000), st.text(min_size=1, max_size=40, alphabet="abcdef0123456789_"))
def test_signatures_verify_with_the_reference_library(body: bytes, msg_id: str) -> None:
    import time

    old, new = new_secret(), new_secret()
    ts = int(time.time())
    header = signature_header([new, old], msg_id, ts, body)
    headers = {"webhook-id": msg_id, "webhook-timestamp": str(ts), "webhook-signature": header}
    for secret in (old, new):  # during a rotation, either secret verifies
        Webhook(secret).verify(body, headers, json_parse=False)
    with pytest.raises(Exception):
        Webhook(new_secret()).verify(body, headers, json_parse=False)


@pytest.mark.parametrize("ip", ["127.0.0.1", "10.0.0.1", "172.16.5.4", "192.168.1.1", "169.254.169.254",
                                "224.0.0.1", "0.0.0.0", "100.64.0.1", "::1", "fe80::1", "fc00::1", "ff02::1",
                                "::ffff:127.0.0.1", "::ffff:10.0.0.1", "240.0.0.1", "not an ip"])
def test_internal_addresses_are_refused(ip: str) -> None:
    assert not address_allowed(ip)


@pytest.mark.parametrize("ip", ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111"])
def test_public_addresses_are_allowed(ip: str) -> None:
    assert address_allowed(ip)


def test_targets_and_events() -> None:
    t = parse_target("https://Example.com:8443/hook?x=1")
    assert (t.scheme, t.host, t.port, t.path, t.host_header) == ("https", "example.com", 8443, "/hook?x=1",
                                                                 "example.com:8443")
    assert parse_target("http://[2001:db8::1]/").host_header == "[2001:db8::1]"
    for bad in ("ftp://x/", "http://", "http://u:p@x/", "http://x/#f", "http://x/ y", "x" * 3000, ""):
        with pytest.raises(InvalidInput):
            parse_target(bad)
    assert parse_events("status.created, follow.created,status.created") == ("status.created", "follow.created")
    for bad in ("", "status.created,nope", ","):
        with pytest.raises(InvalidInput):
            parse_events(bad)


@given(st.integers(1, 10**6), st.integers(0, 10**6))
def test_committed_after_on_sqlite_is_seq_order(head: int, seq: int) -> None:
    assert committed_after(f"seq:{head}", seq) == (seq > head)


def test_committed_after_on_postgresql_reads_the_snapshot() -> None:
    marker = "snap:100:105:101,103"
    after = {x for x in range(95, 110) if committed_after(marker, (x << 16) | 0)}
    # below xmin: committed before; in progress at the add (101, 103) or from xmax on: after
    assert after == {101, 103, 105, 106, 107, 108, 109}


def test_smtp_urls() -> None:
    u = parse_smtp_url("smtp://me%40x:p%3Ass@mail.example:587?starttls=1")
    assert (u.host, u.port, u.user, u.password, u.starttls, u.tls) == ("mail.example", 587, "me@x", "p:ss", True, False)
    assert parse_smtp_url("smtp://mail.example?tls=1").port == 465
    for bad in ("http://x", "smtp://", "smtp://x?starttls=1&tls=1", "smtp://x?foo=1", "smtp://x:99999"):
        with pytest.raises(ValueError):
            parse_smtp_url(bad)
    with pytest.raises(ValueError, match="smtp_url"):
        Settings.from_env({"HOMEFEED_SMTP_URL": "mail.example:25"})

"""scopes.py and pkce.py."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from homefeed.domain.mastodon import pkce
from homefeed.domain.mastodon.errors import MastodonInputError
from homefeed.domain.mastodon.scopes import (
    ALL_SCOPES,
    DEFAULT_SCOPES,
    FOLLOW_GRANTS,
    covers,
    covers_any,
    expand,
    format_scopes,
    parse_scopes,
    requested_within,
)

# -- scopes -------------------------------------------------------------------------------


def test_parse_space_and_plus_separated() -> None:
    assert parse_scopes("read write follow push") == {"read", "write", "follow", "push"}
    assert parse_scopes("read+write:statuses") == {"read", "write:statuses"}
    assert parse_scopes("  read \t write ") == {"read", "write"}


def test_parse_empty_is_default_read() -> None:
    assert parse_scopes(None) == DEFAULT_SCOPES == {"read"}
    assert parse_scopes("") == {"read"}
    assert parse_scopes(" + ") == {"read"}


@pytest.mark.parametrize("bad", ["reed", "read:everything", "crypto", "READ", "admin", "write:"])
def test_parse_rejects_unknown_naming_it(bad: str) -> None:
    with pytest.raises(MastodonInputError) as e:
        parse_scopes(f"read {bad}")
    assert bad in e.value.message and e.value.status == 400


def test_format_is_broad_first_and_single_spaced() -> None:
    assert format_scopes({"push", "follow", "write", "read"}) == "read write follow push"
    assert format_scopes(["write:statuses", "read"]) == "read write:statuses"


def test_covers_rules_from_the_issue() -> None:
    assert covers({"read"}, "read:statuses")
    assert not covers({"read"}, "write:statuses")
    assert covers({"write:statuses"}, "write:statuses")
    assert not covers({"write:statuses"}, "write:follows")
    assert not covers({"read:statuses"}, "read")
    assert covers({"follow"}, "write:follows") and covers({"follow"}, "read:blocks")
    assert not covers({"follow"}, "write:statuses")
    assert covers({"admin:read"}, "admin:read:accounts")
    assert not covers({"read"}, "admin:read:accounts")
    assert not covers({"profile"}, "read:accounts")
    assert covers_any({"profile"}, ["profile", "read:accounts"])


def test_requested_within_app_scopes() -> None:
    assert requested_within({"read", "write", "follow", "push"}, {"read", "write", "follow", "push"})
    assert requested_within({"read:statuses"}, {"read"})
    assert requested_within({"follow"}, {"follow"})
    assert not requested_within({"write"}, {"read"})
    assert not requested_within({"read"}, {"read:statuses"})


def _oracle(granted: frozenset[str], required: str) -> bool:
    if required in granted:
        return True
    if any(required.startswith(g + ":") for g in granted):
        return True
    return "follow" in granted and required in FOLLOW_GRANTS


@given(st.frozensets(st.sampled_from(ALL_SCOPES)), st.sampled_from(ALL_SCOPES))
def test_covers_matches_oracle(granted: frozenset[str], required: str) -> None:
    assert covers(granted, required) == _oracle(granted, required)


@given(st.frozensets(st.sampled_from(ALL_SCOPES)))
def test_format_parse_round_trip_and_expand_is_closed(scopes: frozenset[str]) -> None:
    if scopes:
        assert parse_scopes(format_scopes(scopes)) == scopes
    assert expand(scopes) >= scopes
    assert expand(expand(scopes)) == expand(scopes)
    assert all(covers(scopes, s) for s in expand(scopes))


# -- PKCE ---------------------------------------------------------------------------------

RFC_VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
RFC_CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def test_rfc7636_appendix_b_vector() -> None:
    assert pkce.s256_challenge(RFC_VERIFIER) == RFC_CHALLENGE
    assert pkce.verify(RFC_VERIFIER, RFC_CHALLENGE, "S256")


def test_wrong_missing_or_malformed_verifier_fails() -> None:
    assert not pkce.verify(RFC_VERIFIER[:-1] + "l", RFC_CHALLENGE, "S256")
    assert not pkce.verify(None, RFC_CHALLENGE, "S256")
    assert not pkce.verify("short", pkce.s256_challenge("short"), "S256")
    assert not pkce.verify("a" * 129, "a" * 129, "plain")
    assert not pkce.verify("é" * 43, "é" * 43, "plain")
    assert not pkce.verify(RFC_VERIFIER, RFC_CHALLENGE, "S512")


def test_plain_method() -> None:
    v = "a" * 43
    assert pkce.verify(v, v, "plain")
    assert not pkce.verify(v, "b" * 43, "plain")


def test_validate_challenge() -> None:
    assert pkce.validate_challenge(None, None) is None
    assert pkce.validate_challenge(RFC_CHALLENGE, "S256") == (RFC_CHALLENGE, "S256")
    assert pkce.validate_challenge("x" * 43, None) == ("x" * 43, "plain")
    for challenge, method in [(None, "S256"), (RFC_CHALLENGE, "S512"), ("short", "S256")]:
        with pytest.raises(MastodonInputError):
            pkce.validate_challenge(challenge, method)


@given(st.text(alphabet="ABCXYZabcxyz0189-._~", min_size=43, max_size=128))
def test_any_valid_verifier_round_trips(verifier: str) -> None:
    assert pkce.verify(verifier, pkce.s256_challenge(verifier), "S256")
    assert pkce.validate_challenge(pkce.s256_challenge(verifier), "S256") is not None


def test_covers_refuses_a_bare_string() -> None:
    with pytest.raises(TypeError):
        covers("read", "read:statuses")  # type: ignore[arg-type]

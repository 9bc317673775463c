"""PKCE (RFC 7636): proving that the client redeeming a code is the one that asked for it.

The authorize request carries ``code_challenge`` (and ``code_challenge_method``, ``plain`` when
absent, per RFC 7636 §4.3); the token request carries ``code_verifier``. A missing, malformed
or wrong verifier is Doorkeeper's 400 ``invalid_grant``; the route maps ``False`` to that.
Comparisons are constant-time so the answer's timing says nothing about the challenge.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

from homefeed.domain.mastodon.errors import MastodonInputError

#: RFC 7636 §4.1: 43 to 128 characters of [A-Z] / [a-z] / [0-9] / "-" / "." / "_" / "~".
VERIFIER_RE = re.compile(r"[A-Za-z0-9\-._~]{43,128}")
#: §4.2: an S256 challenge is BASE64URL(SHA256(verifier)) without padding: 43 characters.
S256_CHALLENGE_RE = re.compile(r"[A-Za-z0-9\-_]{43}")
METHODS = ("S256", "plain")


def s256_challenge(verifier: str) -> str:
    """BASE64URL-ENCODE(SHA256(ASCII(verifier))), unpadded (RFC 7636 §4.2)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def validate_challenge(challenge: str | None, method: str | None) -> tuple[str, str] | None:
    """Check an authorize request's PKCE parameters; ``None`` when the client sent none.

    Returns ``(challenge, method)``. A method without a challenge, an unknown method, or a
    challenge of the wrong shape raises ``MastodonInputError`` (400): refusing at authorize
    time beats issuing a code nobody can redeem.
    """
    if not challenge:
        if method:
            raise MastodonInputError("code_challenge_method given without code_challenge", 400)
        return None
    method = method or "plain"
    if method not in METHODS:
        raise MastodonInputError("code_challenge_method must be S256 or plain", 400)
    pattern = S256_CHALLENGE_RE if method == "S256" else VERIFIER_RE
    if not pattern.fullmatch(challenge):
        raise MastodonInputError(f"code_challenge is not a valid {method} challenge", 400)
    return challenge, method


def verify(verifier: str | None, challenge: str, method: str) -> bool:
    """Whether ``verifier`` answers ``challenge``: False when missing or malformed."""
    if not isinstance(verifier, str) or not VERIFIER_RE.fullmatch(verifier):
        return False
    if method == "S256":
        expected = s256_challenge(verifier)
    elif method == "plain":
        expected = verifier
    else:
        return False
    return hmac.compare_digest(expected.encode("ascii"), challenge.encode("ascii", "replace"))

"""The records of accounts and OAuth 2 (RFC 6749) in the system of record: registered apps,
authorization codes and access tokens. Secrets are never stored: the client secret, the
codes, the access and refresh tokens are kept as SHA-256 hashes (they are long random
strings, so a fast hash is enough; passwords, chosen by people, use argon2id)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class OAuthApp:
    id: int
    name: str
    website: str | None
    redirect_uris: tuple[str, ...]
    scopes: frozenset[str]
    client_id: str
    secret_hash: bytes


@dataclass(frozen=True, slots=True)
class AuthCode:
    """A one-use authorization code (``/oauth/authorize`` -> ``/oauth/token``)."""

    code_hash: bytes
    app_id: int
    user_id: int
    scopes: frozenset[str]
    redirect_uri: str
    #: PKCE (RFC 7636): the challenge and its method, or None when the app sent none.
    challenge: str | None
    challenge_method: str | None
    #: Unix seconds.
    expires_at: float


@dataclass(frozen=True, slots=True)
class AccessToken:
    """An OAuth access token. ``user_id`` None: an app's own ``client_credentials`` token.
    ``expires_at`` None: never expires (Mastodon's tokens do not)."""

    token_hash: bytes
    app_id: int
    user_id: int | None
    scopes: frozenset[str]
    created_at: float
    expires_at: float | None = None
    refresh_hash: bytes | None = None
    revoked: bool = False

"""OAuth 2 (RFC 6749) as Mastodon serves it (Doorkeeper): app registration, the
authorization-code grant with PKCE (RFC 7636), ``client_credentials``, ``refresh_token``,
``password`` (on unless ``HOMEFEED_OAUTH_PASSWORD_GRANT=0``) and revocation (RFC 7009).

Every secret is random (256 bits) and stored as its SHA-256 hash: client secrets, codes,
access and refresh tokens. Codes are one-use (the store deletes a code as it hands it out)
and live ten minutes. Access tokens do not expire (Mastodon's do not); a refresh token is
issued with each and is rotated by the refresh grant. A revoked token is refused at once
on every API process (``Homefeed.token_revoked``)."""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from homefeed.domain.errors import HomefeedError, InvalidInput
from homefeed.domain.mastodon import pkce
from homefeed.domain.mastodon.entities import OAUTH_ERRORS, token_entity
from homefeed.domain.mastodon.errors import MastodonInputError
from homefeed.domain.mastodon.scopes import DEFAULT_SCOPES, parse_scopes, requested_within
from homefeed.domain.oauth import AccessToken, AuthCode, OAuthApp
from homefeed.service_layer.accounts import Accounts
from homefeed.service_layer.services import hash_token

if TYPE_CHECKING:
    from homefeed.service_layer.services import Homefeed

OOB = "urn:ietf:wg:oauth:2.0:oob"
CODE_SECONDS = 600
MAX_APP_NAME = 200
MAX_URIS = 10


class OAuthError(HomefeedError):
    """An OAuth error: ``{"error": code, "error_description": message}`` with its status."""

    def __init__(self, code: str, description: str | None = None) -> None:
        status, text = OAUTH_ERRORS[code]
        super().__init__(description or text)
        self.code = code
        self.status = status


def new_secret() -> str:
    return secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class AuthorizeRequest:
    """A checked ``/oauth/authorize`` request."""

    app: OAuthApp
    redirect_uri: str
    scopes: frozenset[str]
    state: str | None
    challenge: tuple[str, str] | None


def _valid_redirect(uri: str) -> bool:
    if uri == OOB:
        return True
    if len(uri) > 2000 or any(c.isspace() for c in uri):
        return False
    parts = urlsplit(uri)
    return bool(parts.scheme) and not parts.fragment and (bool(parts.netloc) or parts.scheme not in ("http", "https"))


class OAuth:
    def __init__(self, hf: Homefeed, accounts: Accounts) -> None:
        self.hf = hf
        self.accounts = accounts

    # -- apps -----------------------------------------------------------------------------
    async def create_app(self, name: Any, redirect_uris: Any, scopes: Any, website: Any) -> tuple[OAuthApp, str]:
        if not isinstance(name, str) or not name.strip():
            raise MastodonInputError("Validation failed: Application name can't be blank")
        if len(name) > MAX_APP_NAME:
            raise MastodonInputError(f"Validation failed: Application name is too long (maximum is {MAX_APP_NAME} characters)")
        if isinstance(redirect_uris, str):
            uris = [u.strip() for u in redirect_uris.splitlines() if u.strip()]
        elif isinstance(redirect_uris, list) and all(isinstance(u, str) for u in redirect_uris):
            uris = [u.strip() for u in redirect_uris if u.strip()]
        else:
            uris = []
        if not uris:
            raise MastodonInputError("Validation failed: Redirect URI can't be blank")
        if len(uris) > MAX_URIS or not all(_valid_redirect(u) for u in uris):
            raise MastodonInputError("Validation failed: Redirect URI must be an absolute URI.")
        if website is not None and website != "":
            if not isinstance(website, str) or len(website) > 2000 or not _valid_redirect(website):
                raise MastodonInputError("Validation failed: Website is invalid")
        else:
            website = None
        granted = parse_scopes(scopes if isinstance(scopes, str) or scopes is None else "\x00", DEFAULT_SCOPES)
        secret = new_secret()
        app = await self.hf.store.create_app(
            name.strip(), website, list(dict.fromkeys(uris)), granted, new_secret(), hash_token(secret)
        )
        return app, secret

    async def client(self, client_id: Any, client_secret: Any, *, secret_optional: bool = False) -> OAuthApp:
        """The app whose credentials these are; ``invalid_client`` (401) otherwise."""
        if not isinstance(client_id, str) or not client_id or len(client_id) > 200:
            raise OAuthError("invalid_client")
        app = await self.hf.store.app_by_client_id(client_id)
        if app is None:
            raise OAuthError("invalid_client")
        if client_secret is None and secret_optional:
            return app
        if not isinstance(client_secret, str) or not hmac.compare_digest(hash_token(client_secret), app.secret_hash):
            raise OAuthError("invalid_client")
        return app

    # -- authorize ------------------------------------------------------------------------
    async def check_authorize(self, params: dict[str, Any]) -> AuthorizeRequest:
        """Check an authorize request before showing the page: an unknown client or a
        redirect URI not registered is shown to the user (never redirected to)."""
        app = await self.client(params.get("client_id"), None, secret_optional=True)
        redirect_uri = params.get("redirect_uri") or (app.redirect_uris[0] if len(app.redirect_uris) == 1 else None)
        if not isinstance(redirect_uri, str) or redirect_uri not in app.redirect_uris:
            raise OAuthError("invalid_request", "The redirect URI is not one this app registered.")
        if params.get("response_type", "code") != "code":
            raise OAuthError("unsupported_grant_type", "response_type must be code")
        scopes = self._scopes(params.get("scope"), app)
        try:
            challenge = pkce.validate_challenge(params.get("code_challenge"), params.get("code_challenge_method"))
        except MastodonInputError as exc:
            raise OAuthError("invalid_request", exc.message) from None
        state = params.get("state")
        return AuthorizeRequest(app, redirect_uri, scopes, state if isinstance(state, str) else None, challenge)

    def _scopes(self, value: Any, app: OAuthApp) -> frozenset[str]:
        if value is not None and not isinstance(value, str):
            raise OAuthError("invalid_scope")
        try:
            scopes = parse_scopes(value, DEFAULT_SCOPES)  # none asked: "read", as Doorkeeper
        except MastodonInputError:
            raise OAuthError("invalid_scope") from None
        if not requested_within(scopes, app.scopes):
            raise OAuthError("invalid_scope")
        return scopes

    async def issue_code(self, req: AuthorizeRequest, user_id: int) -> str:
        code = new_secret()
        ch = req.challenge
        await self.hf.store.create_code(AuthCode(
            hash_token(code), req.app.id, user_id, req.scopes, req.redirect_uri,
            ch[0] if ch else None, ch[1] if ch else None, time.time() + CODE_SECONDS,
        ))
        return code

    # -- tokens ---------------------------------------------------------------------------
    async def _issue(self, app: OAuthApp, user_id: int | None, scopes: frozenset[str],
                     scope_text: str | None = None) -> dict[str, Any]:
        access, refresh = new_secret(), new_secret()
        now = time.time()
        await self.hf.store.create_token(AccessToken(
            hash_token(access), app.id, user_id, scopes, now, None, hash_token(refresh),
        ))
        # the scope as the client wrote it (Mastodon.py compares it with what it asked for),
        # unless written in a way a client would not split back (``read+write``)
        echo = scope_text if scope_text and frozenset(scope_text.split()) == scopes else scopes
        return token_entity(access, echo, int(now), refresh_token=refresh)

    def new_token(self, app: OAuthApp, scopes: frozenset[str]) -> tuple[str, str, AccessToken]:
        """A token to create with a new account (``POST /api/v1/accounts``)."""
        access, refresh = new_secret(), new_secret()
        return access, refresh, AccessToken(
            hash_token(access), app.id, None, scopes, time.time(), None, hash_token(refresh)
        )

    async def token(self, p: dict[str, Any], basic: tuple[str, str] | None, address: str | None) -> dict[str, Any]:
        """``POST /oauth/token``: the Token entity, or an ``OAuthError``."""
        client_id, client_secret = basic if basic else (p.get("client_id"), p.get("client_secret"))
        grant = p.get("grant_type")
        if not isinstance(grant, str) or not grant:
            raise OAuthError("invalid_request", "grant_type is required")
        if grant == "authorization_code":
            # A public client (no secret) must prove itself with PKCE instead.
            app = await self.client(client_id, client_secret, secret_optional=True)
            return await self._code_grant(app, p, client_secret is not None)
        if grant == "password" and not self.hf.settings.oauth_password_grant:
            raise OAuthError("unsupported_grant_type")
        if grant not in ("client_credentials", "refresh_token", "password"):
            raise OAuthError("unsupported_grant_type")
        app = await self.client(client_id, client_secret)
        scope = p.get("scope")
        if grant == "client_credentials":
            scopes = self._scopes(scope, app)
            return await self._issue(app, None, scopes, scope if isinstance(scope, str) else None)
        if grant == "refresh_token":
            refresh = p.get("refresh_token")
            if not isinstance(refresh, str) or not refresh:
                raise OAuthError("invalid_request", "refresh_token is required")
            access, new_refresh = new_secret(), new_secret()
            rotated = await self.hf.store.rotate_token(
                hash_token(refresh), app.id, hash_token(access), hash_token(new_refresh), time.time()
            )
            if rotated is None:
                raise OAuthError("invalid_grant")
            new, old_hash = rotated
            await self.hf.token_revoked(old_hash)  # the old access token is gone everywhere
            return token_entity(access, new.scopes, int(new.created_at), refresh_token=new_refresh)
        # password
        scopes = self._scopes(scope, app)
        try:
            user_id = await self.accounts.log_in(p.get("username"), p.get("password"), address)
        except InvalidInput:
            raise OAuthError("invalid_grant") from None
        return await self._issue(app, user_id, scopes, scope if isinstance(scope, str) else None)

    async def _code_grant(self, app: OAuthApp, p: dict[str, Any], confidential: bool) -> dict[str, Any]:
        code = p.get("code")
        if not isinstance(code, str) or not code:
            raise OAuthError("invalid_request", "code is required")
        record = await self.hf.store.take_code(hash_token(code))
        if record is None or record.app_id != app.id or record.expires_at < time.time():
            raise OAuthError("invalid_grant")
        redirect_uri = p.get("redirect_uri")
        if redirect_uri is not None and redirect_uri != record.redirect_uri:
            raise OAuthError("invalid_grant")
        if record.challenge is not None:
            if not pkce.verify(p.get("code_verifier"), record.challenge, record.challenge_method or "plain"):
                raise OAuthError("invalid_grant")
        elif not confidential:
            raise OAuthError("invalid_client")
        return await self._issue(app, record.user_id, record.scopes)

    async def revoke(self, p: dict[str, Any], basic: tuple[str, str] | None) -> None:
        """``POST /oauth/revoke`` (RFC 7009): an unknown token is not an error."""
        client_id, client_secret = basic if basic else (p.get("client_id"), p.get("client_secret"))
        app = await self.client(client_id, client_secret)
        token = p.get("token")
        if not isinstance(token, str) or not token:
            raise OAuthError("invalid_request", "token is required")
        revoked = await self.hf.store.revoke_token(hash_token(token), app.id)
        if revoked is not None:
            await self.hf.token_revoked(revoked)

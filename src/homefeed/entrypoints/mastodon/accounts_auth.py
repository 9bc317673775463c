"""Accounts routes of the Mastodon API that belong to authentication: ``POST
/api/v1/accounts`` (sign up with an app token, answered with the new user's Token),
``GET /api/v1/accounts/verify_credentials`` and ``PATCH /api/v1/accounts/update_credentials``
(the CredentialAccount)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from homefeed.domain.errors import Forbidden
from homefeed.domain.mastodon.entities import AccountSource, account_entity, token_entity
from homefeed.domain.mastodon.params import Params
from homefeed.domain.mastodon.scopes import covers
from homefeed.domain.model import User
from homefeed.entrypoints.mastodon._common import api
from homefeed.entrypoints.mastodon.oauth import (
    base_urls,
    bearer,
    client_address,
    json_answer,
    oauth_service,
    params,
)
from homefeed.entrypoints.routes._request import service
from homefeed.service_layer.accounts import TooManyAttempts
from homefeed.service_layer.mastodon import account_view
from homefeed.service_layer.services import require_scope


def credential_account(request: Request, user: User) -> dict:
    return account_entity(account_view(user), base_urls(request), AccountSource(note=user.note))


async def register(request: Request) -> Response:
    """``POST /api/v1/accounts``: needs an app's token with ``write:accounts``."""
    hf = service(request)
    caller = await hf.caller(bearer(request))
    if caller.app_id is None or not covers(caller.scopes, "write:accounts"):
        raise Forbidden("This action is outside the authorized scopes")
    p: Params = await params(request)
    svc = oauth_service(request)
    address = client_address(request)
    from homefeed.config import parse_rate_limit

    configured = hf.settings.address_limit is not None or hf.settings.token_limit is not None
    limit = parse_rate_limit(hf.settings.signup_limit) if configured else None
    if limit is not None and address:
        wait = await svc.accounts.guard.limiter.hit(f"signup:address:{address}", limit.rate, limit.burst)
        if wait > 0:
            raise TooManyAttempts(wait)
    from homefeed.domain.oauth import OAuthApp

    app = OAuthApp(caller.app_id, "", None, (), caller.scopes, "", b"")
    access, refresh, token = svc.new_token(app, caller.scopes)
    await svc.accounts.register(
        p.raw("username"), p.raw("email"), p.raw("password"),
        p.get_bool("agreement"), p.raw("display_name"), token,
    )
    return json_answer(token_entity(access, caller.scopes, int(token.created_at), refresh_token=refresh))


async def verify_credentials(request: Request) -> Response:
    hf = service(request)
    uid = require_scope(await hf.caller(bearer(request)), "read:accounts", "profile")
    user = await hf.store.user_by_id(uid)
    if user is None:
        raise Forbidden("the token's user no longer exists")
    return json_answer(credential_account(request, user))


async def update_credentials(request: Request) -> Response:
    hf = service(request)
    uid = require_scope(await hf.caller(bearer(request)), "write:accounts")
    p = await params(request)
    user = await oauth_service(request).accounts.update_profile(uid, p.raw("display_name"), p.raw("note"))
    api(request).forget_account(uid)
    return json_answer(credential_account(request, user))


routes: list[BaseRoute] = [
    Route("/api/v1/accounts", register, methods=["POST"]),
    Route("/api/v1/accounts/verify_credentials", verify_credentials, methods=["GET"]),
    Route("/api/v1/accounts/update_credentials", update_credentials, methods=["PATCH"]),
]

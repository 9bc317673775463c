"""OAuth 2 routes as Mastodon serves them: ``POST /api/v1/apps``, ``/oauth/authorize`` (an
HTML page: log in, then consent), ``POST /oauth/token``, ``POST /oauth/revoke`` and
``/.well-known/oauth-authorization-server``. The rules live in ``service_layer.oauth``.

Errors: ``/oauth/token`` and ``/oauth/revoke`` answer ``{"error": code,
"error_description": text}`` (RFC 6749 §5.2); the other routes Mastodon's ``{"error": text}``.

The authorize page. Without a session it shows a log-in form that posts back to the same
URL (the query string is kept); a successful log-in sets a session cookie (an access token
of no scope, of the pseudo-app 0, for a day: stored hashed like every token, so every
process knows it) and redirects to the same URL, which then shows the consent form.
Approving issues a code: for ``urn:ietf:wg:oauth:2.0:oob`` the browser is sent to
``/oauth/authorize/native?code=`` which shows it (read-only input, as Mastodon); otherwise to
the app's redirect URI with ``code`` and ``state``. Both forms are protected against CSRF by
a double-submitted token (a cookie and a hidden field that must match, compared in constant
time), and a cross-site ``Origin`` is refused.
"""

from __future__ import annotations

import base64
import hmac
import html
import secrets
import time
import weakref
from pathlib import Path
from string import Template
from typing import Any, Awaitable, Callable
from urllib.parse import parse_qsl, urlencode, urlsplit

import orjson
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from homefeed.domain.errors import HomefeedError, InvalidInput
from homefeed.domain.mastodon.entities import (
    AppView,
    Urls,
    application_entity,
    oauth_server_metadata,
)
from homefeed.domain.mastodon.errors import MastodonInputError
from homefeed.domain.mastodon.params import Params
from homefeed.domain.mastodon.scopes import ALL_SCOPES, format_scopes
from homefeed.domain.oauth import AccessToken
from homefeed.entrypoints.routes._request import read_body, service
from homefeed.service_layer.accounts import Accounts, LoginGuard, TooManyAttempts
from homefeed.service_layer.oauth import OOB, AuthorizeRequest, OAuth, OAuthError, new_secret
from homefeed.service_layer.services import Homefeed, hash_token

JSON = "application/json; charset=utf-8"
SESSION_COOKIE = "homefeed_session"
CSRF_COOKIE = "homefeed_csrf"
SESSION_SECONDS = 86400
#: The pseudo-app that owns log-in sessions of the authorize page (no real app has id 0).
SESSION_APP = 0
_PAGE = Template((Path(__file__).parent.parent / "pages" / "oauth.html").read_text("utf-8"))

_services: "weakref.WeakKeyDictionary[Homefeed, OAuth]" = weakref.WeakKeyDictionary()


def oauth_service(request: Request) -> OAuth:
    """The OAuth use cases of this app's Homefeed (made on first use, with the log-in
    limiter: Redis when CACHE_URL is set, else this process)."""
    hf = service(request)
    svc = _services.get(hf)
    if svc is None:
        from homefeed.bootstrap import build_login_limiter

        limiter = build_login_limiter(hf.settings)
        hf.resources.append(limiter)
        svc = OAuth(hf, Accounts(hf, LoginGuard(limiter, hf.settings.login_rate)))
        _services[hf] = svc
    return svc


# -- answers ----------------------------------------------------------------------------------
def json_answer(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type=JSON, headers=headers)


def oauth_route(fn: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    """``/oauth/token`` and ``/oauth/revoke``: every refusal is an OAuth error."""

    async def handler(request: Request) -> Response:
        try:
            return await fn(request)
        except TooManyAttempts as exc:
            return json_answer({"error": "invalid_grant", "error_description": exc.message}, 429,
                               {"Retry-After": str(exc.retry_after)})
        except OAuthError as exc:
            headers = {"WWW-Authenticate": 'Basic realm="homefeed"'} if exc.status == 401 else None
            return json_answer({"error": exc.code, "error_description": exc.message}, exc.status, headers)
        except HomefeedError as exc:
            code = "invalid_request" if exc.status < 500 else "server_error"
            return json_answer({"error": code, "error_description": exc.message},
                               400 if exc.status < 500 else exc.status)

    handler.__name__ = fn.__name__
    handler.__doc__ = fn.__doc__
    return handler


async def params(request: Request) -> Params:
    """Query and body parameters merged (body wins), form-encoded or JSON."""
    query = Params.from_query(request.url.query)
    if request.method in ("GET", "HEAD"):
        return query
    body = await read_body(request)
    ctype = request.headers.get("content-type")
    if ctype and ctype.lower().startswith("multipart/"):
        raise MastodonInputError("multipart bodies (file uploads) are not supported yet", 415)
    return query.merged(Params.from_body(ctype, body))


def bearer(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def basic_auth(request: Request) -> tuple[str, str] | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, _, password = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
    except (ValueError, UnicodeDecodeError):
        raise OAuthError("invalid_client") from None
    from urllib.parse import unquote

    return unquote(user), unquote(password)


def client_address(request: Request) -> str | None:
    return request.client.host if request.client else None


def base_urls(request: Request) -> Urls:
    """URLs with the scheme, host and port the client used."""
    return Urls(str(request.base_url))


# -- apps -------------------------------------------------------------------------------------
async def create_app(request: Request) -> Response:
    """``POST /api/v1/apps``: register an app; its secret is shown this once."""
    p = await params(request)
    app, secret = await oauth_service(request).create_app(
        p.raw("client_name"), p.raw("redirect_uris"), p.raw("scopes"), p.raw("website"),
    )
    view = AppView(app.id, app.name, app.scopes, app.redirect_uris, app.client_id, app.website, secret)
    out = application_entity(view, credentials=True)
    out["vapid_key"] = ""
    return json_answer(out)


# -- tokens -----------------------------------------------------------------------------------
def _plain(p: Params) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in p.as_dict().items():
        if v is None or isinstance(v, str):
            out[k] = v
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[k] = str(v)
        else:
            raise OAuthError("invalid_request", f"{k[:40]} must be a string")
    return out


@oauth_route
async def token(request: Request) -> Response:
    """``POST /oauth/token``: the four grants."""
    p = _plain(await params(request))
    answer = await oauth_service(request).token(p, basic_auth(request), client_address(request))
    return json_answer(answer, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})


@oauth_route
async def revoke(request: Request) -> Response:
    """``POST /oauth/revoke`` (RFC 7009): 200 ``{}`` whether or not the token was live."""
    p = _plain(await params(request))
    await oauth_service(request).revoke(p, basic_auth(request))
    return json_answer({})


async def metadata(request: Request) -> Response:
    """``/.well-known/oauth-authorization-server`` (RFC 8414)."""
    hf = service(request)
    return json_answer(oauth_server_metadata(base_urls(request), ALL_SCOPES, hf.settings.oauth_password_grant))


# -- the authorize page -----------------------------------------------------------------------
def page(title: str, body: str, status: int = 200, headers: dict[str, str] | None = None) -> HTMLResponse:
    response = HTMLResponse(_PAGE.substitute(title=html.escape(title), body=body), status_code=status)
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self' *"
    for k, v in (headers or {}).items():
        response.headers[k] = v
    return response


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def _csrf_token(request: Request) -> str:
    existing = request.cookies.get(CSRF_COOKIE)
    return existing if existing and 20 <= len(existing) <= 100 else secrets.token_urlsafe(32)


def _with_csrf(request: Request, response: Response, csrf: str) -> Response:
    if request.cookies.get(CSRF_COOKIE) != csrf:
        response.set_cookie(CSRF_COOKIE, csrf, httponly=True, samesite="strict", path="/oauth",
                            secure=_secure(request))
    return response


def _check_csrf(request: Request, form: dict[str, Any]) -> None:
    """The hidden field must equal the cookie; a browser sends an ``Origin`` on a form POST,
    and it must be this server."""
    cookie = request.cookies.get(CSRF_COOKIE)
    field = form.get("csrf")
    if not cookie or not isinstance(field, str) or not hmac.compare_digest(cookie.encode(), field.encode()):
        raise _CsrfRefused()
    origin = request.headers.get("origin")
    if origin and origin != "null":
        o = urlsplit(origin)
        if (o.scheme, o.netloc) != (request.url.scheme, request.url.netloc):
            raise _CsrfRefused()


class _CsrfRefused(Exception):
    pass


async def _session_user(request: Request) -> int | None:
    raw = request.cookies.get(SESSION_COOKIE)
    if not raw or len(raw) > 100:
        return None
    record = await service(request).store.access_token(hash_token(raw))
    if record is None or record.app_id != SESSION_APP or record.revoked or record.user_id is None:
        return None
    if record.expires_at is not None and record.expires_at < time.time():
        return None
    return record.user_id


def _error_page(message: str, status: int = 400) -> HTMLResponse:
    return page("Authorization failed", f'<p class="error">{html.escape(message)}</p>', status)


def _login_form(request: Request, req: AuthorizeRequest, csrf: str, error: str | None = None) -> str:
    err = f'<p class="error">{html.escape(error)}</p>' if error else ""
    return f"""<p><b>{html.escape(req.app.name)}</b> wants to use your homefeed account. Log in first.</p>
{err}
<form method="post" action="{html.escape(request.url.path + ('?' + request.url.query if request.url.query else ''))}">
<input type="hidden" name="csrf" value="{html.escape(csrf)}">
<input type="hidden" name="step" value="login">
<label for="username">Username or email</label>
<input type="text" id="username" name="username" autocomplete="username" required autofocus>
<label for="password">Password</label>
<input type="password" id="password" name="password" autocomplete="current-password" required>
<button type="submit">Log in</button>
</form>"""


def _consent_form(request: Request, req: AuthorizeRequest, csrf: str, handle: str) -> str:
    scopes = "".join(f"<li>{html.escape(s)}</li>" for s in format_scopes(req.scopes).split())
    where = "shows you a code to copy into the app" if req.redirect_uri == OOB else f"returns to {html.escape(req.redirect_uri)}"
    return f"""<p>Logged in as <b>@{html.escape(handle)}</b>.</p>
<p><b>{html.escape(req.app.name)}</b> asks for access to your account:</p>
<ul class="scopes">{scopes}</ul>
<p class="muted">Authorizing {where}.</p>
<form method="post" action="{html.escape(request.url.path + ('?' + request.url.query if request.url.query else ''))}">
<input type="hidden" name="csrf" value="{html.escape(csrf)}">
<input type="hidden" name="step" value="consent">
<button type="submit" name="decision" value="approve">Authorize</button>
<button type="submit" name="decision" value="deny">Deny</button>
</form>"""


def _redirect_with(uri: str, **fields: str | None) -> RedirectResponse:
    query = urlencode({k: v for k, v in fields.items() if v is not None})
    sep = "&" if urlsplit(uri).query else "?"
    return RedirectResponse(uri + sep + query, status_code=302)


def _force_login(query: dict[str, str]) -> bool:
    """Mastodon's ``force_login``: show the log-in form even to a logged-in session (the web
    client asks for it, so that after a log-out the next person is not signed in as the last)."""
    return query.get("force_login", "").lower() in ("true", "1")


def _query_without_force_login(request: Request) -> str:
    """Where a successful log-in goes back to: the same request, now to the consent form."""
    kept = [(k, v) for k, v in parse_qsl(request.url.query, keep_blank_values=True) if k != "force_login"]
    return "?" + urlencode(kept) if kept else ""


async def authorize(request: Request) -> Response:
    """``GET|POST /oauth/authorize``: log in, then consent."""
    svc = oauth_service(request)
    hf = service(request)
    query = {k: v for k, v in request.query_params.items()}
    try:
        req = await svc.check_authorize(query)
    except HomefeedError as exc:
        return _error_page(exc.message)
    csrf = _csrf_token(request)
    user_id = await _session_user(request)
    if request.method == "POST":
        body = (await read_body(request)).decode("utf-8", "replace")
        try:
            form = dict(parse_qsl(body, keep_blank_values=True, max_num_fields=20))
        except ValueError:
            return _error_page("This form has too many fields.")
        try:
            _check_csrf(request, form)
        except _CsrfRefused:
            return _error_page("The form has expired or did not come from this page (CSRF check failed): reload it.", 403)
        if form.get("step") == "login":
            try:
                uid = await svc.accounts.log_in(form.get("username"), form.get("password"), client_address(request))
            except TooManyAttempts as exc:
                return _with_csrf(request, page("Log in", _login_form(request, req, csrf, exc.message), 429,
                                                {"Retry-After": str(exc.retry_after)}), csrf)
            except InvalidInput:
                return _with_csrf(request, page("Log in", _login_form(request, req, csrf, "Invalid email/username or password."), 401), csrf)
            session = new_secret()
            now = time.time()
            await hf.store.create_token(AccessToken(hash_token(session), SESSION_APP, uid, frozenset(), now,
                                                    now + SESSION_SECONDS))
            back = RedirectResponse(request.url.path + _query_without_force_login(request), status_code=303)
            back.set_cookie(SESSION_COOKIE, session, max_age=SESSION_SECONDS, httponly=True, samesite="lax",
                            path="/oauth", secure=_secure(request))
            return back
        if user_id is None:
            return _with_csrf(request, page("Log in", _login_form(request, req, csrf, "Your session has ended: log in again."), 401), csrf)
        if form.get("decision") != "approve":
            if req.redirect_uri == OOB:
                return page("Authorization denied", f"<p>You did not authorize {html.escape(req.app.name)}.</p>")
            return _redirect_with(req.redirect_uri, error="access_denied", state=req.state)
        code = await svc.issue_code(req, user_id)
        if req.redirect_uri == OOB:
            return RedirectResponse("/oauth/authorize/native?" + urlencode({"code": code}), status_code=303)
        return _redirect_with(req.redirect_uri, code=code, state=req.state)
    if user_id is None or _force_login(query):
        return _with_csrf(request, page("Log in", _login_form(request, req, csrf)), csrf)
    user = await hf.store.user_by_id(user_id)
    if user is None:
        return _with_csrf(request, page("Log in", _login_form(request, req, csrf)), csrf)
    return _with_csrf(request, page("Authorize", _consent_form(request, req, csrf, user.handle)), csrf)


async def native(request: Request) -> Response:
    """``/oauth/authorize/native?code=``: the out-of-band code, to copy into the app."""
    code = request.query_params.get("code", "")
    if not code or len(code) > 200:
        return _error_page("No authorization code here.", 404)
    return page("Authorization code", f"""<p>Copy this code and paste it into the app:</p>
<input type="text" class="code" id="code" name="code" readonly value="{html.escape(code)}" size="48" onfocus="this.select()">""")


routes: list[BaseRoute] = [
    Route("/api/v1/apps", create_app, methods=["POST"]),
    Route("/oauth/authorize", authorize, methods=["GET", "POST"]),
    Route("/oauth/authorize/", authorize, methods=["GET", "POST"]),
    Route("/oauth/authorize/native", native, methods=["GET"]),
    Route("/oauth/token", token, methods=["POST"]),
    Route("/oauth/token/", token, methods=["POST"]),
    Route("/oauth/revoke", revoke, methods=["POST"]),
    Route("/oauth/revoke/", revoke, methods=["POST"]),
    Route("/.well-known/oauth-authorization-server", metadata, methods=["GET"]),
]

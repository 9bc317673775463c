"""Shared pieces for the tests that drive real Mastodon clients (issue 10's proof).

- :func:`target` — a module-scoped fixture, parametrized over both profiles: ``embedded`` (one
  ``homefeed serve`` on a temp data dir, as ``tests/e2e/conftest.py`` starts it) and
  ``scaleout`` (``tests/e2e/scaleout.py``: two API processes and two workers over a scratch
  PostgreSQL database, a private Redis and a private NATS JetStream). Small settings, so that a
  celebrity exists with a handful of users and the home timeline is paged past the cache's cap.
- :class:`HomeOracle` — a model of the *records* the test wrote (who follows whom now, which
  statuses exist and were not deleted); the home timeline must equal what it computes.
- :class:`EntityCheck` — validates every JSON body a client *received* against the JSON
  schemas written from Mastodon's entity documentation (``tests/mastodon_schemas``), by
  route; hooked into the ``requests.Session`` a client uses (Mastodon.py accepts one), or
  called on bodies by hand (toot).
- :func:`browser_authorize` — a browser, as far as OAuth needs one: GET the authorize page,
  fill in the login form (keeping its hidden fields, the CSRF token among them, and its
  cookie), submit, then submit the consent form's approve button, and read the code from
  the redirect or from the out-of-band page (a read-only input, as Mastodon shows it).

Written against Mastodon.py 2.3.3 and toot 0.52.1 (the newest on PyPI on 2026-12-06).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import pathlib
import re
import secrets
import time
import uuid
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any, Callable, Iterator
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import httpx
import jsonschema_rs
import pytest

CELEBRITY_THRESHOLD = 3
TIMELINE_CAP = 5
MAX_POST_LENGTH = 500
SETTINGS = {
    "HOMEFEED_CELEBRITY_THRESHOLD": str(CELEBRITY_THRESHOLD),
    "HOMEFEED_TIMELINE_CAP": str(TIMELINE_CAP),
    "HOMEFEED_MAX_POST_LENGTH": str(MAX_POST_LENGTH),
}
PROFILES = ["embedded", "scaleout"]
OOB = "urn:ietf:wg:oauth:2.0:oob"
PASSWORD = "correct horse battery staple"
FANOUT_TIMEOUT = 30.0


# --------------------------------------------------------------------------------------------
# a server per profile
# --------------------------------------------------------------------------------------------


@dataclass
class Target:
    """A running homefeed, whichever profile: its API base URLs (two in scale-out, so that a
    token issued by one process is used on another), a drain, and its logs."""

    profile: str
    urls: list[str]
    drain: Callable[[], Any]
    logs: Callable[[], str]

    def url(self, i: int = 0) -> str:
        return self.urls[i % len(self.urls)]


@contextlib.contextmanager
def running(profile: str, tmp_path_factory: pytest.TempPathFactory,
            settings: dict[str, str] | None = None) -> Iterator[Target]:
    env = {**SETTINGS, **(settings or {})}
    if profile == "embedded":
        from tests.e2e.conftest import Api, _assert_clean_log, _start_server, _stop

        server = _start_server(tmp_path_factory, "mastodon-embedded", env)
        api = Api(server)
        try:
            yield Target(profile, [server.base_url], api.drain, server.log_tail)
        finally:
            api.close()
            _stop(server)
        _assert_clean_log(server)
    elif profile == "scaleout":
        from tests.e2e.scaleout import deployment

        with deployment(tmp_path_factory.mktemp("mastodon-scaleout"), env) as dep:
            yield Target(profile, list(dep.urls), dep.drain, dep.logs)
    else:  # pragma: no cover
        raise ValueError(profile)


@pytest.fixture(scope="module", params=PROFILES)
def target(request, tmp_path_factory) -> Iterator[Target]:
    """A homefeed server per test module and profile (import this fixture into the module)."""
    with running(request.param, tmp_path_factory) as t:
        yield t


# --------------------------------------------------------------------------------------------
# names
# --------------------------------------------------------------------------------------------


def unique_username(prefix: str = "m") -> str:
    """Mastodon usernames: letters, digits and ``_``, at most 30 characters."""
    return f"{prefix}_{uuid.uuid4().hex[:12]}"[:30]


def email_of(username: str) -> str:
    return f"{username}@example.com"


def unique_word(prefix: str = "mk") -> str:
    return f"{prefix}{uuid.uuid4().hex[:14]}"


def wait_until(what: str, check: Callable[[], Any], timeout: float = FANOUT_TIMEOUT,
               interval: float = 0.05) -> Any:
    """Poll ``check`` until it returns a truthy value; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = check()
        if last:
            return last
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not true after {timeout}s (last: {last!r})")
        time.sleep(interval)


# --------------------------------------------------------------------------------------------
# the oracle
# --------------------------------------------------------------------------------------------


@dataclass
class HomeOracle:
    """What the records say. Account and status ids are the strings the server answered."""

    following: dict[str, set[str]] = field(default_factory=dict)
    authors: dict[str, str] = field(default_factory=dict)  # status id -> account id
    deleted: set[str] = field(default_factory=set)

    def account(self, account_id: str) -> None:
        self.following.setdefault(account_id, set())

    def follow(self, a: str, b: str) -> None:
        self.following.setdefault(a, set()).add(b)

    def unfollow(self, a: str, b: str) -> None:
        self.following.setdefault(a, set()).discard(b)

    def post(self, author: str, status_id: str) -> None:
        assert status_id not in self.authors, f"status id {status_id} answered twice"
        self.authors[status_id] = author

    def delete(self, status_id: str) -> None:
        self.deleted.add(status_id)

    def home(self, account_id: str) -> list[str]:
        """The reader's own statuses and those of everyone they follow now, newest first."""
        who = self.following.get(account_id, set()) | {account_id}
        ids = [s for s, a in self.authors.items() if a in who and s not in self.deleted]
        return sorted(ids, key=int, reverse=True)

    def by(self, account_id: str) -> list[str]:
        return sorted((s for s, a in self.authors.items() if a == account_id and s not in self.deleted),
                      key=int, reverse=True)


# --------------------------------------------------------------------------------------------
# entity schemas
# --------------------------------------------------------------------------------------------

SCHEMAS = pathlib.Path(__file__).resolve().parents[1] / "mastodon_schemas"
_ALL = {p.stem: json.loads(p.read_text()) for p in SCHEMAS.glob("*.json")}
_REGISTRY = jsonschema_rs.Registry([(s["$id"], s) for s in _ALL.values()])
VALIDATORS = {name: jsonschema_rs.Draft202012Validator(s, registry=_REGISTRY) for name, s in _ALL.items()}


def schema_errors(schema: str, value: Any) -> list[str]:
    return [f"{err.instance_path}: {err.message}" for err in VALIDATORS[schema].iter_errors(value)]


def check_entity(schema: str, value: Any) -> Any:
    """``value`` is a ``schema`` entity, or a list of them when ``schema`` ends with ``[]``."""
    if schema.endswith("[]"):
        assert isinstance(value, list), f"{schema}: not a list: {value!r:.300}"
        for i, item in enumerate(value):
            errs = schema_errors(schema[:-2], item)
            assert not errs, f"{schema}[{i}] invalid: {errs}\n{item!r:.2000}"
    else:
        errs = schema_errors(schema, value)
        assert not errs, f"{schema} invalid: {errs}\n{value!r:.2000}"
    return value


_ID = r"[0-9]+"
#: (method or "*", path regex, schema) for a 2xx JSON answer; first match wins.
ROUTES: list[tuple[str, str, str]] = [
    ("POST", r"/api/v1/apps", "credential_application"),
    ("POST", r"/oauth/token", "token"),
    ("POST", r"/api/v1/accounts", "token"),
    ("*", r"/api/v1/accounts/verify_credentials", "credential_account"),
    ("*", r"/api/v1/accounts/update_credentials", "credential_account"),
    ("GET", r"/api/v1/accounts/relationships", "relationship[]"),
    ("GET", r"/api/v1/accounts/lookup", "account"),
    ("POST", rf"/api/v1/accounts/{_ID}/(follow|unfollow)", "relationship"),
    ("GET", rf"/api/v1/accounts/{_ID}/(followers|following)", "account[]"),
    ("GET", rf"/api/v1/accounts/{_ID}/statuses", "status[]"),
    ("GET", rf"/api/v1/accounts/{_ID}", "account"),
    ("POST", r"/api/v1/statuses", "status"),
    ("GET", rf"/api/v1/statuses/{_ID}/context", "context"),
    ("GET", rf"/api/v1/statuses/{_ID}/(favourited_by|reblogged_by)", "account[]"),
    ("POST", rf"/api/v1/statuses/{_ID}/(favourite|unfavourite|reblog|unreblog)", "status"),
    ("GET", r"/api/v1/favourites", "status[]"),
    ("GET", r"/api/v1/notifications", "notification[]"),
    ("GET", rf"/api/v1/notifications/{_ID}", "notification"),
    ("*", r"/api/v1/markers", "markers"),
    ("*", rf"/api/v1/statuses/{_ID}", "status"),
    ("GET", r"/api/v1/timelines/(home|public|tag/[^/]+)", "status[]"),
    ("GET", r"/api/v2/search", "search"),
    ("GET", r"/api/v1/instance/?", "instance_v1"),
    ("GET", r"/api/v2/instance/?", "instance_v2"),
]


def schema_for(method: str, path: str) -> str | None:
    for m, pattern, schema in ROUTES:
        if (m == "*" or m == method.upper()) and re.fullmatch(pattern, path):
            return schema
    return None


class EntityCheck:
    """Validates every JSON answer a ``requests`` session receives (a response hook: the
    client itself is unchanged). Errors (4xx) must be Mastodon's ``{"error": ...}``."""

    def __init__(self) -> None:
        self.problems: list[str] = []
        self.seen: dict[str, int] = {}

    def hook(self, response: Any, *args: Any, **kwargs: Any) -> None:
        try:
            self._check(response.request.method, response.url, response.status_code,
                        response.headers.get("content-type", ""), response.content)
        except Exception as exc:  # never break the client: report at the end
            self.problems.append(f"{response.request.method} {response.url}: checker crashed: {exc!r}")

    def _check(self, method: str, url: str, status: int, ctype: str, content: bytes) -> None:
        path = urlsplit(url).path
        media = ctype.split(";")[0].strip().lower()
        if status >= 400:
            if path.startswith(("/api/", "/oauth/token", "/oauth/revoke")):
                if media != "application/json":
                    self.problems.append(f"{method} {path} -> {status} with content-type {ctype!r}")
                    return
                errs = schema_errors("error", json.loads(content))
                if errs:
                    self.problems.append(f"{method} {path} -> {status}: error body {errs}: {content[:300]!r}")
                self.seen["error"] = self.seen.get("error", 0) + 1
            return
        schema = schema_for(method, path)
        if schema is None or status == 204:
            return
        if media != "application/json":
            self.problems.append(f"{method} {path} -> {status} with content-type {ctype!r}")
            return
        value = json.loads(content)
        try:
            check_entity(schema, value)
        except AssertionError as exc:
            self.problems.append(f"{method} {path}: {exc}")
        self.seen[schema] = self.seen.get(schema, 0) + 1

    def session(self) -> Any:
        import requests

        s = requests.Session()
        s.hooks["response"].append(self.hook)
        return s

    def assert_clean(self, *must_have_seen: str) -> None:
        assert not self.problems, "entities that do not match Mastodon's:\n" + "\n".join(self.problems[:30])
        missing = [s for s in must_have_seen if not self.seen.get(s)]
        assert not missing, f"never received (so never checked): {missing}; seen {self.seen}"


# --------------------------------------------------------------------------------------------
# PKCE and a browser for the authorize page
# --------------------------------------------------------------------------------------------


def pkce_pair() -> tuple[str, str]:
    """(verifier, S256 challenge), as RFC 7636 says."""
    verifier = base64.urlsafe_b64encode(secrets.token_bytes(48)).rstrip(b"=").decode()
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


@dataclass
class Form:
    action: str
    method: str
    fields: list[dict[str, Any]] = field(default_factory=list)  # inputs, selects, textareas
    buttons: list[dict[str, Any]] = field(default_factory=list)  # submit buttons with text

    def has_password(self) -> bool:
        return any(f.get("type") == "password" for f in self.fields)


class _PageParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.forms: list[Form] = []
        self.inputs: list[dict[str, Any]] = []  # every input of the page, in or out of forms
        self._form: Form | None = None
        self._button: dict[str, Any] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k.lower(): (v if v is not None else "") for k, v in attrs}
        if tag == "form":
            self._form = Form(a.get("action", ""), (a.get("method") or "get").lower())
            self.forms.append(self._form)
        elif tag == "input":
            a.setdefault("type", "text")
            a["type"] = a["type"].lower()
            self.inputs.append(a)
            if self._form is not None:
                if a["type"] in ("submit", "image"):
                    self._form.buttons.append({**a, "text": a.get("value", "")})
                else:
                    self._form.fields.append(a)
        elif tag == "button" and self._form is not None:
            self._button = {**a, "type": (a.get("type") or "submit").lower(), "text": ""}
            if self._button["type"] == "submit":
                self._form.buttons.append(self._button)
        elif tag in ("textarea", "select") and self._form is not None:
            self._form.fields.append({**a, "type": tag})

    def handle_data(self, data: str) -> None:
        if self._button is not None:
            self._button["text"] += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._form = None
        elif tag == "button":
            self._button = None


def parse_page(html: str) -> _PageParser:
    p = _PageParser()
    p.feed(html)
    return p


_APPROVE = re.compile(r"authori[sz]e|allow|approve|accept|grant", re.I)
_DENY = re.compile(r"deny|reject|cancel|decline", re.I)
CSRF_FIELD = re.compile(r"csrf|authenticity|xsrf", re.I)


def form_data(form: Form, fill: dict[str, str] | None = None, button: dict[str, Any] | None = None,
              drop: Callable[[str], bool] = lambda name: False) -> list[tuple[str, str]]:
    """What a browser submits: every named field with its value (unchecked boxes left out),
    overridden by ``fill``, plus the pressed button's name=value."""
    out: list[tuple[str, str]] = []
    for f in form.fields:
        name = f.get("name")
        if not name or drop(name):
            continue
        if f.get("type") in ("checkbox", "radio") and "checked" not in f:
            continue
        out.append((name, (fill or {}).get(name, f.get("value", ""))))
    if button is not None and button.get("name"):
        out.append((button["name"], button.get("value", "")))
    return out


def _approve_button(form: Form) -> dict[str, Any] | None:
    for b in form.buttons:
        label = f"{b.get('text', '')} {b.get('value', '')} {b.get('name', '')}"
        if _APPROVE.search(label) and not _DENY.search(label):
            return b
    return form.buttons[0] if len(form.buttons) == 1 else None


def _code_from_location(location: str) -> str | None:
    q = parse_qs(urlsplit(location).query)
    return q["code"][0] if q.get("code") else None


def code_on_page(html: str) -> str | None:
    """The out-of-band code, as Mastodon shows it: a read-only input's value."""
    for a in parse_page(html).inputs:
        if "readonly" in a and a.get("value"):
            return a["value"]
    return None


@dataclass
class Authorized:
    code: str
    #: the login form's fields (names), the consent page, for tests that look at them
    login_fields: list[str]
    csrf_field: str | None
    redirect: str | None  # where the browser was sent with the code (None: shown on a page)


class Browser:
    """An httpx client that keeps cookies and follows same-site redirects by hand (so each
    hop can be looked at), as a browser does."""

    def __init__(self) -> None:
        self.http = httpx.Client(timeout=30.0, follow_redirects=False)
        self.history: list[str] = []

    def close(self) -> None:
        self.http.close()

    def go(self, method: str, url: str, data: list[tuple[str, str]] | None = None,
           **kw: Any) -> httpx.Response:
        if data is not None:  # a form, in the browser's order, repeated names kept
            kw["content"] = urlencode(data).encode()
            kw["headers"] = {**kw.get("headers", {}), "Content-Type": "application/x-www-form-urlencoded"}
        r = self.http.request(method, url, **kw)
        self.history.append(f"{method} {url} -> {r.status_code}")
        hops = 0
        while r.is_redirect:
            location = urljoin(str(r.url), r.headers["location"])
            if not location.startswith(("http://", "https://")) or _code_from_location(location) and \
                    urlsplit(location).netloc != urlsplit(url).netloc:
                return r  # to the app (a custom scheme or another site): the browser leaves
            hops += 1
            assert hops < 10, f"redirect loop: {self.history}"
            r = self.http.get(location)
            self.history.append(f"GET {location} -> {r.status_code}")
        return r


def browser_authorize(auth_url: str, login: str, password: str) -> Authorized:
    """Log in and consent on the authorize page as a person with a browser does; return the
    code the app receives."""
    b = Browser()
    try:
        page = b.go("GET", auth_url)
        assert page.status_code == 200, f"authorize page: {page.status_code} {page.text[:500]}\n{b.history}"
        assert "text/html" in page.headers.get("content-type", ""), page.headers.get("content-type")
        forms = parse_page(page.text).forms
        login_form = next((f for f in forms if f.has_password()), None)
        login_fields: list[str] = []
        csrf: str | None = None
        if login_form is not None:
            login_fields = [f["name"] for f in login_form.fields if f.get("name")]
            csrf = next((n for n in login_fields if CSRF_FIELD.search(n)), None)
            fill = {}
            for f in login_form.fields:
                if not f.get("name"):
                    continue
                if f.get("type") == "password":
                    fill[f["name"]] = password
                elif f.get("type") in ("text", "email"):
                    fill[f["name"]] = login
            assert fill, f"no login field in {login_form}"
            page = b.go(login_form.method.upper(), urljoin(str(page.url), login_form.action or str(page.url)),
                        data=form_data(login_form, fill, _approve_button(login_form)))
            if page.is_redirect:
                code = _code_from_location(page.headers["location"])
                assert code, f"login redirected away without a code: {page.headers['location']}"
                return Authorized(code, login_fields, csrf, page.headers["location"])
            assert page.status_code == 200, f"after login: {page.status_code} {page.text[:800]}\n{b.history}"
            forms = parse_page(page.text).forms
            assert not any(f.has_password() for f in forms), (
                f"still asked for a password after logging in as {login!r}: {page.text[:800]}")
        consent = [f for f in forms if f.method == "post" and _approve_button(f) is not None]
        assert consent, f"no consent form with an approve button: {page.text[:1500]}\n{b.history}"
        form = consent[0]
        r = b.go("POST", urljoin(str(page.url), form.action or str(page.url)),
                 data=form_data(form, button=_approve_button(form)))
        if r.is_redirect:
            location = urljoin(str(r.url), r.headers["location"])
            code = _code_from_location(location)
            assert code, f"consent redirected without a code: {location}\n{b.history}"
            return Authorized(code, login_fields, csrf, location)
        assert r.status_code == 200, f"after consent: {r.status_code} {r.text[:800]}\n{b.history}"
        code = code_on_page(r.text) or _code_from_location(str(r.url))
        assert code, f"no code shown after consent (a read-only input): {r.text[:1500]}\n{b.history}"
        return Authorized(code, login_fields, csrf, None)
    finally:
        b.close()


def with_pkce(auth_url: str, challenge: str) -> str:
    return f"{auth_url}&code_challenge={challenge}&code_challenge_method=S256"

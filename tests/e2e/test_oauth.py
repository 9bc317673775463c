"""Accounts and OAuth 2 over HTTP against a real server (the embedded profile; the
scale-out revocation test is in test_oauth_scaleout.py): apps, the four grants, the
authorize page as a browser uses it (cookies, CSRF token, PKCE), registration, one user
model across /v1 and the Mastodon routes, scopes, revocation, throttled log-ins."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from html import unescape
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from .conftest import unique_handle

OOB = "urn:ietf:wg:oauth:2.0:oob"
SCOPES = "read write follow push"


@pytest.fixture
def http(server):
    with httpx.Client(base_url=server.base_url, timeout=30.0) as c:
        yield c


def make_app(http: httpx.Client, *, json: bool = False, scopes: str = SCOPES,
             redirect_uris: Any = OOB) -> dict[str, Any]:
    body = {"client_name": "test app", "redirect_uris": redirect_uris, "scopes": scopes,
            "website": "https://example.org"}
    r = http.post("/api/v1/apps", json=body) if json else http.post("/api/v1/apps", data=body)
    assert r.status_code == 200, r.text
    return r.json()


def app_token(http: httpx.Client, app: dict[str, Any], scope: str = SCOPES) -> str:
    r = http.post("/oauth/token", data={"grant_type": "client_credentials", "client_id": app["client_id"],
                                        "client_secret": app["client_secret"], "scope": scope})
    assert r.status_code == 200, r.text
    return r.json()["access_token"]


def sign_up(http: httpx.Client, app: dict[str, Any], *, password: str = "correct horse battery") -> dict[str, Any]:
    username = unique_handle("m")
    email = f"{username}@Example.org"
    r = http.post("/api/v1/accounts", headers={"Authorization": "Bearer " + app_token(http, app)},
                  data={"username": username, "email": email, "password": password,
                        "agreement": "1", "locale": "en"})
    assert r.status_code == 200, r.text
    return {"username": username, "email": email, "password": password, "token": r.json()}


def password_grant(http: httpx.Client, app: dict[str, Any], username: str, password: str,
                   scope: str = SCOPES) -> httpx.Response:
    return http.post("/oauth/token", data={
        "grant_type": "password", "client_id": app["client_id"], "client_secret": app["client_secret"],
        "username": username, "password": password, "scope": scope})


def me(http: httpx.Client, token: str) -> httpx.Response:
    return http.get("/api/v1/accounts/verify_credentials", headers={"Authorization": "Bearer " + token})


def hidden(page: str, name: str) -> str:
    m = re.search(rf'name="{name}" value="([^"]*)"', page)
    assert m, page
    return unescape(m.group(1))


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


# ---------------------------------------------------------------------------------------------
class TestApps:
    @pytest.mark.parametrize("json", [False, True])
    def test_register_app_form_and_json(self, http, json):
        app = make_app(http, json=json)
        assert app["client_id"] and app["client_secret"] and app["name"] == "test app"
        assert app["redirect_uri"] == OOB and app["scopes"] == SCOPES.split()

    def test_several_redirect_uris_as_array(self, http):
        app = make_app(http, json=True, redirect_uris=[OOB, "https://app.example/cb"])
        assert app["redirect_uris"] == [OOB, "https://app.example/cb"]

    @pytest.mark.parametrize("body", [
        {"client_name": "x"},
        {"client_name": "", "redirect_uris": OOB},
        {"client_name": "x", "redirect_uris": "not a uri"},
        {"client_name": "x", "redirect_uris": OOB, "scopes": "read nonsense"},
    ])
    def test_bad_app_is_refused_with_mastodon_error(self, http, body):
        r = http.post("/api/v1/apps", data=body)
        assert 400 <= r.status_code < 500 and isinstance(r.json()["error"], str)

    def test_metadata_absolute_urls_and_password_grant(self, http, server):
        r = http.get("/.well-known/oauth-authorization-server")
        assert r.status_code == 200
        m = r.json()
        assert m["token_endpoint"] == server.base_url + "/oauth/token"
        assert m["authorization_endpoint"] == server.base_url + "/oauth/authorize"
        assert "password" in m["grant_types_supported"]
        assert set(SCOPES.split()) <= set(m["scopes_supported"])


class TestPasswordGrant:
    def test_username_or_email_and_scope_echoed(self, http):
        app = make_app(http)
        acct = sign_up(http, app)
        for login in (acct["username"], acct["email"].upper()):
            r = password_grant(http, app, login, acct["password"])
            assert r.status_code == 200, r.text
            tok = r.json()
            assert tok["scope"] == SCOPES and tok["token_type"] == "Bearer"
            assert me(http, tok["access_token"]).json()["username"] == acct["username"]

    def test_wrong_password_is_invalid_grant(self, http):
        app = make_app(http)
        acct = sign_up(http, app)
        r = password_grant(http, app, acct["username"], "wrong password!")
        assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
        r = password_grant(http, app, "nobody" + secrets.token_hex(4), "wrong password!")
        assert r.status_code == 400 and r.json()["error"] == "invalid_grant"

    def test_bad_client_secret(self, http):
        app = make_app(http)
        acct = sign_up(http, app)
        r = http.post("/oauth/token", data={"grant_type": "password", "client_id": app["client_id"],
                                            "client_secret": "nope", "username": acct["username"],
                                            "password": acct["password"], "scope": "read"})
        assert r.status_code == 401 and r.json()["error"] == "invalid_client"

    def test_scope_beyond_the_app_is_invalid_scope(self, http):
        app = make_app(http, scopes="read")
        r = http.post("/oauth/token", data={"grant_type": "client_credentials", "client_id": app["client_id"],
                                            "client_secret": app["client_secret"], "scope": "read write"})
        assert r.status_code == 400 and r.json()["error"] == "invalid_scope"

    def test_failed_logins_are_throttled_per_account(self, http):
        app = make_app(http)
        acct = sign_up(http, app)
        # username and email share the account's allowance
        statuses = [password_grant(http, app, acct["username"] if i % 2 else acct["email"], "wrong password!").status_code
                    for i in range(14)]
        assert statuses[0] == 400 and 429 in statuses
        # now even the right password waits: a guess is never cheap
        r = password_grant(http, app, acct["username"], acct["password"])
        assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1


class TestRegistration:
    def test_token_works_at_once_on_both_apis(self, http):
        app = make_app(http)
        acct = sign_up(http, app)
        token = acct["token"]["access_token"]
        assert acct["token"]["scope"] == SCOPES
        r = me(http, token)
        assert r.status_code == 200 and r.json()["acct"] == acct["username"]
        # the same user on /v1: post with the OAuth token, read it back by handle
        r = http.post("/v1/posts", json={"text": "hello from oauth"}, headers={"Authorization": "Bearer " + token})
        assert r.status_code == 201, r.text
        assert r.json()["author"]["handle"] == acct["username"]
        assert http.get(f"/v1/users/{acct['username']}").status_code == 200

    def test_v1_user_is_a_mastodon_account(self, http):
        handle = unique_handle("v")
        r = http.post("/v1/users", json={"handle": handle})
        assert r.status_code == 201
        r = me(http, r.json()["token"])
        assert r.status_code == 200 and r.json()["username"] == handle and "source" in r.json()

    def test_needs_an_app_token(self, http):
        r = http.post("/api/v1/accounts", data={"username": unique_handle("m"), "email": "a@b.example",
                                                "password": "long enough", "agreement": "1"})
        assert r.status_code == 401 and isinstance(r.json()["error"], str)

    @pytest.mark.parametrize("change", [
        {"password": "short"}, {"email": "not-an-email"}, {"agreement": "0"}, {"username": "bad name!"},
    ])
    def test_bad_input_422_and_nothing_created(self, http, change):
        app = make_app(http)
        username = unique_handle("m")
        body = {"username": username, "email": f"{username}@example.org", "password": "long enough pw",
                "agreement": "1", **change}
        r = http.post("/api/v1/accounts", headers={"Authorization": "Bearer " + app_token(http, app)}, data=body)
        assert r.status_code == 422 and isinstance(r.json()["error"], str)
        if "username" not in change:
            assert http.get(f"/v1/users/{username}").status_code == 404

    def test_email_unique_ignoring_case(self, http):
        app = make_app(http)
        acct = sign_up(http, app)
        r = http.post("/api/v1/accounts", headers={"Authorization": "Bearer " + app_token(http, app)},
                      data={"username": unique_handle("m"), "email": acct["email"].lower(),
                            "password": "long enough pw", "agreement": "true"})
        assert r.status_code == 422

    def test_update_credentials(self, http):
        app = make_app(http)
        token = sign_up(http, app)["token"]["access_token"]
        h = {"Authorization": "Bearer " + token}
        uid = me(http, token).json()["id"]
        # read once before the change, so that the account and a status embedding it are cached
        st = http.post("/api/v1/statuses", headers=h, data={"status": "before the rename"}).json()
        assert http.get(f"/api/v1/accounts/{uid}").json()["display_name"] != "Ada"
        assert http.get(f"/api/v1/statuses/{st['id']}", headers=h).json()["account"]["display_name"] != "Ada"
        r = http.patch("/api/v1/accounts/update_credentials", headers=h,
                       data={"display_name": "Ada", "note": "hello #world"})
        assert r.status_code == 200, r.text
        assert r.json()["display_name"] == "Ada" and r.json()["source"]["note"] == "hello #world"
        # answered at once by the same process: the account and the statuses that embed it
        assert http.get(f"/api/v1/accounts/{uid}").json()["display_name"] == "Ada"
        assert http.get(f"/api/v1/statuses/{st['id']}", headers=h).json()["account"]["display_name"] == "Ada"


class TestScopes:
    def test_read_alone_cannot_write(self, http):
        app = make_app(http)
        acct = sign_up(http, app)
        read = password_grant(http, app, acct["username"], acct["password"], scope="read").json()["access_token"]
        assert me(http, read).status_code == 200
        h = {"Authorization": "Bearer " + read}
        r = http.post("/v1/posts", json={"text": "nope"}, headers=h)
        assert r.status_code == 403
        r = http.patch("/api/v1/accounts/update_credentials", headers=h, data={"note": "x"})
        assert r.status_code == 403 and r.json()["error"]

    def test_write_statuses_posts_but_does_not_follow(self, http):
        app = make_app(http)
        acct = sign_up(http, app)
        other = http.post("/v1/users", json={"handle": unique_handle("o")}).json()
        tok = password_grant(http, app, acct["username"], acct["password"], scope="write:statuses").json()
        h = {"Authorization": "Bearer " + tok["access_token"]}
        assert tok["scope"] == "write:statuses"
        assert http.post("/v1/posts", json={"text": "yes"}, headers=h).status_code == 201
        assert http.post(f"/v1/users/{other['handle']}/follow", headers=h).status_code == 403
        assert me(http, tok["access_token"]).status_code == 403

    def test_app_token_cannot_act_as_a_user(self, http):
        app = make_app(http)
        tok = app_token(http, app)
        assert me(http, tok).status_code == 403
        assert http.post("/v1/posts", json={"text": "x"}, headers={"Authorization": "Bearer " + tok}).status_code == 403


class TestRefreshAndRevoke:
    def test_refresh_rotates(self, http):
        app = make_app(http)
        acct = sign_up(http, app)
        tok = password_grant(http, app, acct["username"], acct["password"]).json()
        assert me(http, tok["access_token"]).status_code == 200  # cached by the server now
        creds = {"client_id": app["client_id"], "client_secret": app["client_secret"]}
        r = http.post("/oauth/token", data={"grant_type": "refresh_token", "refresh_token": tok["refresh_token"], **creds})
        assert r.status_code == 200, r.text
        new = r.json()
        assert set(new["scope"].split()) == set(SCOPES.split())
        assert me(http, new["access_token"]).status_code == 200
        assert me(http, tok["access_token"]).status_code == 401  # the old one is gone
        r = http.post("/oauth/token", data={"grant_type": "refresh_token", "refresh_token": tok["refresh_token"], **creds})
        assert r.status_code == 400 and r.json()["error"] == "invalid_grant"

    def test_revoke_is_401_at_once(self, http):
        app = make_app(http)
        acct = sign_up(http, app)
        token = password_grant(http, app, acct["username"], acct["password"]).json()["access_token"]
        assert me(http, token).status_code == 200  # cached now
        h = {"Authorization": "Bearer " + token}
        assert http.get("/v1/timelines/home", headers=h).status_code == 200
        r = http.post("/oauth/revoke", data={"client_id": app["client_id"], "client_secret": app["client_secret"],
                                             "token": token})
        assert r.status_code == 200 and r.json() == {}
        assert me(http, token).status_code == 401
        assert http.get("/v1/timelines/home", headers=h).status_code == 401

    def test_revoke_needs_the_owning_app(self, http):
        app, other = make_app(http), make_app(http)
        acct = sign_up(http, app)
        token = password_grant(http, app, acct["username"], acct["password"]).json()["access_token"]
        r = http.post("/oauth/revoke", data={"client_id": other["client_id"],
                                             "client_secret": other["client_secret"], "token": token})
        assert r.status_code == 200
        assert me(http, token).status_code == 200


class TestAuthorizationCode:
    def login_and_consent(self, server, app, acct, *, query: dict[str, str], trailing_slash: bool = False):
        """Drive the pages as a browser: GET (log-in form), POST it, follow to the consent
        form, POST it; returns the final redirect response and the browser."""
        browser = httpx.Client(base_url=server.base_url, timeout=30.0)
        path = "/oauth/authorize/" if trailing_slash else "/oauth/authorize"
        r = browser.get(path, params=query)
        assert r.status_code == 200 and 'name="password"' in r.text
        r = browser.post(str(r.url), data={"csrf": hidden(r.text, "csrf"), "step": "login",
                                           "username": acct["email"], "password": acct["password"]})
        assert r.status_code == 303, r.text
        r = browser.get(r.headers["location"])
        assert r.status_code == 200 and "Authorize" in r.text, r.text
        assert parse_qs(urlsplit(str(r.url)).query)["client_id"] == [app["client_id"]]  # query kept
        r = browser.post(str(r.url), data={"csrf": hidden(r.text, "csrf"), "step": "consent", "decision": "approve"})
        return r, browser

    def test_oob_with_pkce(self, http, server):
        app = make_app(http)
        acct = sign_up(http, app)
        verifier, challenge = pkce_pair()
        query = {"client_id": app["client_id"], "redirect_uri": OOB, "response_type": "code",
                 "scope": SCOPES, "code_challenge": challenge, "code_challenge_method": "S256"}
        r, browser = self.login_and_consent(server, app, acct, query=query, trailing_slash=True)
        assert r.status_code == 303 and r.headers["location"].startswith("/oauth/authorize/native?code=")
        page = browser.get(r.headers["location"])
        code = re.search(r'readonly value="([^"]+)"', page.text).group(1)
        creds = {"client_id": app["client_id"], "client_secret": app["client_secret"], "redirect_uri": OOB,
                 "grant_type": "authorization_code", "code": code}
        bad = http.post("/oauth/token", data={**creds, "code_verifier": pkce_pair()[0]})
        assert bad.status_code == 400 and bad.json()["error"] == "invalid_grant"
        # the wrong verifier spent the code: a fresh one is needed
        r, browser = self.login_and_consent(server, app, acct, query=query)
        code = parse_qs(urlsplit(r.headers["location"]).query)["code"][0]
        creds["code"] = code
        missing = http.post("/oauth/token", data=creds)
        assert missing.status_code == 400 and missing.json()["error"] == "invalid_grant"
        r, browser = self.login_and_consent(server, app, acct, query=query)
        creds["code"] = parse_qs(urlsplit(r.headers["location"]).query)["code"][0]
        ok = http.post("/oauth/token", data={**creds, "code_verifier": verifier})
        assert ok.status_code == 200, ok.text
        assert ok.json()["scope"] == SCOPES
        assert me(http, ok.json()["access_token"]).json()["username"] == acct["username"]
        again = http.post("/oauth/token", data={**creds, "code_verifier": verifier})
        assert again.status_code == 400 and again.json()["error"] == "invalid_grant"

    def test_redirect_uri_gets_code_and_state(self, http, server):
        uri = "https://app.example/callback"
        app = make_app(http, redirect_uris=uri)
        acct = sign_up(http, app)
        verifier, challenge = pkce_pair()
        r, _ = self.login_and_consent(server, app, acct, query={
            "client_id": app["client_id"], "redirect_uri": uri, "response_type": "code", "scope": "read",
            "state": "xyz 1", "code_challenge": challenge, "code_challenge_method": "S256"})
        assert r.status_code == 302
        loc = urlsplit(r.headers["location"])
        assert f"{loc.scheme}://{loc.netloc}{loc.path}" == uri
        q = parse_qs(loc.query)
        assert q["state"] == ["xyz 1"]
        tok = http.post("/oauth/token", data={"grant_type": "authorization_code", "code": q["code"][0],
                                              "client_id": app["client_id"], "redirect_uri": uri,
                                              "code_verifier": verifier})  # a public client: no secret
        assert tok.status_code == 200 and tok.json()["scope"] == "read"

    def test_csrf_missing_is_403_and_logs_nobody_in(self, http, server):
        app = make_app(http)
        acct = sign_up(http, app)
        query = {"client_id": app["client_id"], "redirect_uri": OOB, "response_type": "code", "scope": "read"}
        with httpx.Client(base_url=server.base_url, timeout=30.0) as browser:
            r = browser.get("/oauth/authorize", params=query)
            r = browser.post(str(r.url), data={"step": "login", "username": acct["username"],
                                               "password": acct["password"]})
            assert r.status_code == 403 and "homefeed_session" not in r.headers.get("set-cookie", "")
            # a token from another page (cookie mismatch) is refused too
            r = browser.post(str(r.url), data={"csrf": "x" * 43, "step": "login",
                                               "username": acct["username"], "password": acct["password"]})
            assert r.status_code == 403

    def test_cross_site_origin_is_refused(self, http, server):
        app = make_app(http)
        acct = sign_up(http, app)
        with httpx.Client(base_url=server.base_url, timeout=30.0) as browser:
            r = browser.get("/oauth/authorize", params={"client_id": app["client_id"], "redirect_uri": OOB,
                                                        "response_type": "code", "scope": "read"})
            r = browser.post(str(r.url), headers={"Origin": "https://evil.example"},
                             data={"csrf": hidden(r.text, "csrf"), "step": "login",
                                   "username": acct["username"], "password": acct["password"]})
            assert r.status_code == 403

    def test_page_logins_are_throttled_too(self, http, server):
        app = make_app(http)
        acct = sign_up(http, app)
        with httpx.Client(base_url=server.base_url, timeout=30.0) as browser:
            r = browser.get("/oauth/authorize", params={"client_id": app["client_id"], "redirect_uri": OOB,
                                                        "response_type": "code", "scope": "read"})
            url, csrf = str(r.url), hidden(r.text, "csrf")
            statuses = [browser.post(url, data={"csrf": csrf, "step": "login", "username": acct["username"],
                                                "password": "not the password"}).status_code for _ in range(12)]
            assert statuses[0] == 401 and statuses[-1] == 429
            r = browser.post(url, data={"csrf": csrf, "step": "login", "username": acct["username"],
                                        "password": acct["password"]})
            assert r.status_code == 429 and "homefeed_session" not in r.headers.get("set-cookie", "")

    def test_unknown_client_or_redirect_shows_an_error(self, http):
        app = make_app(http)
        r = http.get("/oauth/authorize", params={"client_id": "nope", "redirect_uri": OOB, "response_type": "code"})
        assert r.status_code in (400, 401) and "text/html" in r.headers["content-type"]
        r = http.get("/oauth/authorize", params={"client_id": app["client_id"], "redirect_uri": "https://evil.example/",
                                                 "response_type": "code"})
        assert r.status_code == 400 and "evil.example" not in r.headers.get("location", "")

    def test_session_cookie_is_not_a_bearer_token(self, http, server):
        app = make_app(http)
        acct = sign_up(http, app)
        with httpx.Client(base_url=server.base_url, timeout=30.0) as browser:
            r = browser.get("/oauth/authorize", params={"client_id": app["client_id"], "redirect_uri": OOB,
                                                        "response_type": "code", "scope": "read"})
            r = browser.post(str(r.url), data={"csrf": hidden(r.text, "csrf"), "step": "login",
                                               "username": acct["username"], "password": acct["password"]})
            session = r.cookies.get("homefeed_session") or browser.cookies.get("homefeed_session")
            assert session
            assert me(http, session).status_code == 401


def test_password_grant_off_and_registrations_closed(server_factory):
    s = server_factory.start("oauth-closed", oauth_password_grant="0", registrations="closed")
    with httpx.Client(base_url=s.base_url, timeout=30.0) as http:
        m = http.get("/.well-known/oauth-authorization-server").json()
        assert "password" not in m["grant_types_supported"]
        assert m["token_endpoint"] == s.base_url + "/oauth/token"
        app = make_app(http)
        r = http.post("/api/v1/accounts", headers={"Authorization": "Bearer " + app_token(http, app)},
                      data={"username": "closedx", "email": "c@example.org", "password": "long enough pw",
                            "agreement": "1"})
        assert r.status_code == 403 and isinstance(r.json()["error"], str)
        assert http.get("/v1/users/closedx").status_code == 404
        r = password_grant(http, app, "anyone", "whatever pw")
        assert r.status_code == 400 and r.json()["error"] == "unsupported_grant_type"


def test_the_flows_on_postgresql(server_factory, tmp_path):
    """The scale-out system of record (one API process on PostgreSQL): registration, both
    log-ins, the authorization-code flow with PKCE, refresh and revocation."""
    import subprocess
    import sys

    from tests.backends import scratch_pg_database

    from tests.e2e.scaleout import pg_url

    with scratch_pg_database() as conninfo:
        dsn = pg_url(conninfo)
        env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("HOMEFEED_")}
        env["HOMEFEED_DATABASE_URL"] = dsn
        subprocess.run([sys.executable, "-m", "homefeed", "migrate"], env=env, check=True, capture_output=True)
        s = server_factory.start("oauth-pg", database_url=dsn)
        with httpx.Client(base_url=s.base_url, timeout=30.0) as http:
            app = make_app(http, json=True)
            acct = sign_up(http, app)
            assert me(http, acct["token"]["access_token"]).status_code == 200
            tok = password_grant(http, app, acct["email"], acct["password"]).json()
            assert tok["scope"] == SCOPES
            verifier, challenge = pkce_pair()
            flow = TestAuthorizationCode()
            r, _ = flow.login_and_consent(s, app, acct, query={
                "client_id": app["client_id"], "redirect_uri": OOB, "response_type": "code", "scope": "read",
                "code_challenge": challenge, "code_challenge_method": "S256"})
            code = parse_qs(urlsplit(r.headers["location"]).query)["code"][0]
            creds = {"client_id": app["client_id"], "client_secret": app["client_secret"]}
            ok = http.post("/oauth/token", data={"grant_type": "authorization_code", "code": code,
                                                 "redirect_uri": OOB, "code_verifier": verifier, **creds})
            assert ok.status_code == 200 and ok.json()["scope"] == "read"
            again = http.post("/oauth/token", data={"grant_type": "authorization_code", "code": code,
                                                    "redirect_uri": OOB, "code_verifier": verifier, **creds})
            assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
            new = http.post("/oauth/token", data={"grant_type": "refresh_token",
                                                  "refresh_token": tok["refresh_token"], **creds}).json()
            assert me(http, tok["access_token"]).status_code == 401
            assert me(http, new["access_token"]).status_code == 200
            assert http.post("/oauth/revoke", data={"token": new["access_token"], **creds}).status_code == 200
            assert me(http, new["access_token"]).status_code == 401


def test_sign_ups_per_address_are_limited_when_a_limiter_is_configured(server_factory):
    s = server_factory.start("oauth-signup-limit", rate_limit_per_address="1000/s", signup_limit="2/hour burst 2")
    with httpx.Client(base_url=s.base_url, timeout=30.0) as http:
        app = make_app(http)
        token = app_token(http, app)
        statuses = []
        for i in range(3):
            name = unique_handle("s")
            statuses.append(http.post("/api/v1/accounts", headers={"Authorization": "Bearer " + token},
                                      data={"username": name, "email": f"{name}@example.org",
                                            "password": "long enough pw", "agreement": "1"}).status_code)
        assert statuses == [200, 200, 429]
        assert http.get(f"/v1/users/{name}").status_code == 404

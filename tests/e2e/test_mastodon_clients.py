"""Mastodon.py, unchanged, against a real homefeed (issue 10's proof), in both profiles.

Written against Mastodon.py 2.3.3 (any 2.x should do). Everything goes through the library's
public methods, as a bot author would write it; the only help it gets is ``allow_http=True``
(Mastodon.py refuses plain-http OAuth URLs otherwise: the servers here listen on
http://127.0.0.1) and a ``requests.Session`` whose response hook validates every entity the
library receives against ``tests/mastodon_schemas`` (the library itself is untouched). The
authorize page is driven like a browser (``mastodon_kit.browser_authorize``).

Mastodon.py 2.3.3's ``log_in(code=...)`` has no ``code_verifier`` parameter, so the PKCE test
exchanges its code with a plain form POST, as a PKCE-capable app (Elk, Phanpy) does, and then
hands the token to Mastodon.py.
"""

from __future__ import annotations

from dataclasses import dataclass
import pytest
import requests
from mastodon import (Mastodon, MastodonAPIError, MastodonIllegalArgumentError,
                      MastodonNotFoundError, MastodonUnauthorizedError)

from tests.e2e import mastodon_kit as kit
from tests.e2e.mastodon_kit import target  # noqa: F401  (the server fixture, per profile)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

DEFAULT_SCOPES = ["read", "write", "follow", "push"]


@dataclass
class User:
    m: Mastodon
    id: str
    username: str
    email: str
    password: str


@pytest.fixture
def check() -> kit.EntityCheck:
    return kit.EntityCheck()


def make_app(base: str, check: kit.EntityCheck, scopes: list[str] = DEFAULT_SCOPES,
             redirect_uris: str | list[str] | None = None) -> tuple[str, str]:
    client_id, client_secret = Mastodon.create_app(
        "homefeed-e2e", scopes=scopes, redirect_uris=redirect_uris, api_base_url=base,
        website="https://example.com/homefeed-e2e", session=check.session())
    assert client_id and client_secret
    return client_id, client_secret


def client(base: str, check: kit.EntityCheck, app: tuple[str, str] | None = None,
           access_token: str | None = None) -> Mastodon:
    cid, secret = app or (None, None)
    return Mastodon(client_id=cid, client_secret=secret, access_token=access_token,
                    api_base_url=base, session=check.session(), ratelimit_method="throw")


def sign_up(target: kit.Target, check: kit.EntityCheck, app: tuple[str, str], i: int = 0,
            prefix: str = "m") -> User:
    """``create_account`` (client_credentials token, then POST /api/v1/accounts): the token
    answered works at once."""
    username = kit.unique_username(prefix)
    m = client(target.url(i), check, app)
    token = m.create_account(username, kit.PASSWORD, kit.email_of(username), agreement=True)
    assert token
    me = m.account_verify_credentials()
    assert me.username == username and me.acct == username, me
    assert isinstance(me.id, str) and me.id.isdigit(), me.id
    return User(m, str(me.id), username, kit.email_of(username), kit.PASSWORD)


def walk_home(m: Mastodon, limit: int) -> list[list[str]]:
    """The home timeline page by page with ``fetch_next``, as Mastodon.py users do."""
    pages: list[list[str]] = []
    page = m.timeline_home(limit=limit)
    for _ in range(200):
        assert len(page) <= limit, f"{len(page)} statuses for limit={limit}"
        if not page:
            break
        pages.append([str(s.id) for s in page])
        if getattr(page, "_pagination_next", None) is None:
            break  # no Link rel="next": the end
        page = m.fetch_next(page)
        if page is None:
            break
    else:
        pytest.fail("more than 200 pages")
    return pages


def assert_pages_match(pages: list[list[str]], expected: list[str], limit: int, where: str) -> None:
    flat = [i for p in pages for i in p]
    assert len(flat) == len(set(flat)), f"{where}: a status twice while paging: {pages}"
    missing = [i for i in expected if i not in flat]
    extra = [i for i in flat if i not in expected]
    assert flat == expected, (f"{where}: pages {pages}\n want {expected}\n missing {missing}, "
                              f"not expected {extra}")
    for k, p in enumerate(pages[:-1]):
        assert len(p) == limit, f"{where}: page {k} has {len(p)} < {limit} statuses but is not the last"


# --------------------------------------------------------------------------------------------
# accounts and logging in
# --------------------------------------------------------------------------------------------


def test_sign_up_then_log_in_with_the_password_grant_by_username_and_by_email(target, check):
    app = make_app(target.url(0), check)
    user = sign_up(target, check, app, 0)

    # log in on the other API process in scale-out: the records are shared
    for login in (user.email, user.username, user.email.capitalize()):  # phones capitalize
        m = client(target.url(1), check, app)
        token = m.log_in(login, user.password, scopes=DEFAULT_SCOPES, allow_http=True)
        assert token and token != user.m.access_token
        me = m.account_verify_credentials()
        assert str(me.id) == user.id and me.username == user.username
        # Mastodon.py read the version right after logging in: it must parse as >= 4.0.0
        assert m.verify_minimum_version("4.0.0", cached=True), "version read as < 4.0.0"

    bad = client(target.url(0), check, app)
    with pytest.raises(MastodonIllegalArgumentError):
        bad.log_in(user.email, "not the password", allow_http=True)
    with pytest.raises(MastodonIllegalArgumentError):
        bad.log_in("nobody-" + user.email, user.password, allow_http=True)

    # the same email again is refused (unique ignoring case), as is a short password
    other = client(target.url(0), check, app)
    with pytest.raises(MastodonIllegalArgumentError):
        other.create_account(kit.unique_username(), kit.PASSWORD, user.email.upper(), agreement=True)
    with pytest.raises(MastodonIllegalArgumentError):
        u = kit.unique_username()
        other.create_account(u, "short", kit.email_of(u), agreement=True)
    check.assert_clean("credential_application", "credential_account")


def test_authorization_code_flow_through_the_login_and_consent_pages(target, check):
    """The out-of-band flow a desktop app uses: Mastodon.py's ``auth_request_url``, a person
    logs in and approves in a browser, copies the code shown, the app calls ``log_in(code=)``."""
    app = make_app(target.url(0), check)
    user = sign_up(target, check, app, 0)

    m = client(target.url(1), check, app)
    url = m.auth_request_url(scopes=DEFAULT_SCOPES, allow_http=True)
    assert url.startswith(target.url(1)) or url.startswith("http://127.0.0.1"), url
    got = kit.browser_authorize(url, user.email, user.password)
    assert got.csrf_field, f"the login form has no CSRF field: {got.login_fields}"
    assert got.redirect is None, "oob: the code is shown, not redirected to"

    token = m.log_in(code=got.code, scopes=DEFAULT_SCOPES, allow_http=True)
    assert token
    assert str(m.account_verify_credentials().id) == user.id

    # a code works once
    again = client(target.url(0), check, app)
    with pytest.raises(MastodonIllegalArgumentError):
        again.log_in(code=got.code, scopes=DEFAULT_SCOPES, allow_http=True)

    # the username works on the login page too
    got2 = kit.browser_authorize(m.auth_request_url(scopes=DEFAULT_SCOPES, allow_http=True),
                                 user.username, user.password)
    m2 = client(target.url(0), check, app)
    m2.log_in(code=got2.code, scopes=DEFAULT_SCOPES, allow_http=True)
    assert str(m2.account_verify_credentials().id) == user.id
    check.assert_clean("token", "credential_account")


def test_login_form_refuses_a_post_without_its_csrf_token(target, check):
    app = make_app(target.url(0), check)
    user = sign_up(target, check, app, 0)
    url = client(target.url(0), check, app).auth_request_url(scopes=DEFAULT_SCOPES, allow_http=True)
    b = kit.Browser()
    try:
        page = b.go("GET", url)
        assert page.status_code == 200, page.text[:500]
        form = next(f for f in kit.parse_page(page.text).forms if f.has_password())
        csrf = [f["name"] for f in form.fields if f.get("name") and kit.CSRF_FIELD.search(f["name"])]
        assert csrf, f"no CSRF field in the login form: {form.fields}"
        fill = {f["name"]: (user.password if f.get("type") == "password" else user.email)
                for f in form.fields if f.get("name") and f.get("type") in ("text", "email", "password")}
        from urllib.parse import urljoin

        action = urljoin(str(page.url), form.action or str(page.url))
        r = b.go("POST", action, data=kit.form_data(form, fill, drop=lambda n: n in csrf))
        assert 400 <= r.status_code < 500, f"login without the CSRF token answered {r.status_code}"
        forged = [(k, "forged" if k in csrf else v) for k, v in kit.form_data(form, fill)]
        r = b.go("POST", action, data=forged)
        assert 400 <= r.status_code < 500, f"login with a forged CSRF token answered {r.status_code}"
    finally:
        b.close()


def test_authorization_code_with_pkce_s256_and_a_redirect_uri(target, check):
    """A web app: PKCE S256 and its registered redirect URI; the code arrives in the redirect.
    A used code, a wrong or a missing verifier are 400 ``invalid_grant``."""
    redirect = "https://app.example/callback"
    app = make_app(target.url(0), check, redirect_uris=[redirect, kit.OOB])
    user = sign_up(target, check, app, 0)
    m = client(target.url(0), check, app)
    token_url = target.url(1) + "/oauth/token"
    s = check.session()

    def authorize() -> tuple[str, str]:
        verifier, challenge = kit.pkce_pair()
        url = kit.with_pkce(m.auth_request_url(redirect_uris=redirect, scopes=DEFAULT_SCOPES,
                                               state="xyz", allow_http=True), challenge)
        got = kit.browser_authorize(url, user.email, user.password)
        assert got.redirect and got.redirect.startswith(redirect + "?"), got.redirect
        assert "state=xyz" in got.redirect, got.redirect
        return got.code, verifier

    def exchange(code: str, verifier: str | None) -> requests.Response:
        data = {"grant_type": "authorization_code", "code": code, "client_id": app[0],
                "client_secret": app[1], "redirect_uri": redirect, "scope": " ".join(DEFAULT_SCOPES)}
        if verifier is not None:
            data["code_verifier"] = verifier
        return s.post(token_url, data=data, timeout=30)

    code, verifier = authorize()
    wrong = exchange(code, kit.pkce_pair()[0])
    assert wrong.status_code == 400 and wrong.json().get("error") == "invalid_grant", wrong.text

    code, verifier = authorize()
    missing = exchange(code, None)
    assert missing.status_code == 400 and missing.json().get("error") == "invalid_grant", missing.text

    code, verifier = authorize()
    ok = exchange(code, verifier)
    assert ok.status_code == 200, ok.text
    body = ok.json()
    assert set(body["scope"].split(" ")) >= set(DEFAULT_SCOPES), body
    reused = exchange(code, verifier)
    assert reused.status_code == 400 and reused.json().get("error") == "invalid_grant", reused.text

    with_token = client(target.url(0), check, app, access_token=body["access_token"])
    assert str(with_token.account_verify_credentials().id) == user.id

    # refresh_token grant, through Mastodon.py, when a refresh token was issued
    if body.get("refresh_token"):
        r = client(target.url(1), check, app)
        assert r.log_in(refresh_token=body["refresh_token"], scopes=DEFAULT_SCOPES, allow_http=True)
        assert str(r.account_verify_credentials().id) == user.id
    check.assert_clean("token")


# --------------------------------------------------------------------------------------------
# the home timeline against the oracle
# --------------------------------------------------------------------------------------------


def test_home_timeline_pages_equal_the_oracle(target, check):
    """Follow two people and a celebrity (more followers than the threshold: pulled, not
    pushed), post more than the cache's cap, then page the home timeline with ``fetch_next``
    and back with ``fetch_previous``: exactly the oracle's list, no gap, no duplicate. Then a
    delete and an unfollow, and again."""
    app = make_app(target.url(0), check)
    oracle = kit.HomeOracle()
    reader = sign_up(target, check, app, 0, "reader")
    a = sign_up(target, check, app, 1, "a")
    b = sign_up(target, check, app, 0, "b")
    celeb = sign_up(target, check, app, 1, "celeb")
    fans = [sign_up(target, check, app, i, "fan") for i in range(kit.CELEBRITY_THRESHOLD)]
    for u in (reader, a, b, celeb, *fans):
        oracle.account(u.id)

    for who, whom in [(reader, a), (reader, b), (reader, celeb), *((f, celeb) for f in fans)]:
        rel = who.m.account_follow(whom.id)
        assert rel.following is True and str(rel.id) == whom.id, rel
        oracle.follow(who.id, whom.id)
    rels = reader.m.account_relationships([a.id, celeb.id])
    assert [(str(r.id), r.following) for r in rels] == [(a.id, True), (celeb.id, True)], rels
    followers = reader.m.account_followers(celeb.id, limit=40)
    assert {str(x.id) for x in followers} == {reader.id, *(f.id for f in fans)}

    n = 0
    for round_ in range(4):  # interleaved authors: 4 * 4 = 16 > TIMELINE_CAP statuses
        for u in (a, celeb, b, reader):
            n += 1
            st = u.m.status_post(f"post {n} by {u.username} round {round_} #homefeedtest")
            assert str(st.account.id) == u.id and st.visibility == "public" and st.url, st
            oracle.post(u.id, str(st.id))
    expected = oracle.home(reader.id)
    assert len(expected) == 16 > kit.TIMELINE_CAP

    target.drain()
    kit.wait_until("home timeline's first page shows the newest statuses",
                   lambda: [str(s.id) for s in reader.m.timeline_home(limit=kit.TIMELINE_CAP)]
                   == expected[:kit.TIMELINE_CAP])

    for limit in (3, 4, 7, 20):
        pages = walk_home(reader.m, limit)
        assert_pages_match(pages, expected, limit, f"fetch_next, limit={limit}")

    # back from the last page with fetch_previous (min_id): the same pages, in reverse
    limit = 4
    page = reader.m.timeline_home(limit=limit)
    forward = [page]
    while getattr(page, "_pagination_next", None) is not None:
        page = reader.m.fetch_next(page)
        if not page:
            break
        forward.append(page)
    backward = [[str(s.id) for s in forward[-1]]]
    page = forward[-1]
    for _ in range(len(forward) + 2):
        page = reader.m.fetch_previous(page)
        if not page:
            break
        backward.append([str(s.id) for s in page])
    assert backward[::-1] == [[str(s.id) for s in p] for p in forward], (backward, forward)

    # since_id/min_id right under the newest: nothing newer
    assert reader.m.timeline_home(min_id=expected[0]) == []

    # delete one of a's statuses (answered with its text) and unfollow b
    victim = oracle.by(a.id)[1]
    deleted = a.m.status_delete(victim)
    assert str(deleted.id) == victim and deleted.text.startswith("post "), deleted
    oracle.delete(victim)
    rel = reader.m.account_unfollow(b.id)
    assert rel.following is False
    oracle.unfollow(reader.id, b.id)
    expected = oracle.home(reader.id)
    target.drain()
    kit.wait_until("home timeline without the deleted status and b's statuses",
                   lambda: [i for p in walk_home(reader.m, 5) for i in p] == expected)
    for limit in (2, 5):
        assert_pages_match(walk_home(reader.m, limit), expected, limit, f"after delete+unfollow, limit={limit}")
    with pytest.raises(MastodonNotFoundError):
        reader.m.status(victim)

    # the celebrity's own profile, paged
    statuses = reader.m.account_statuses(celeb.id, limit=3)
    got = [str(s.id) for s in reader.m.fetch_remaining(statuses)]
    assert got == oracle.by(celeb.id)
    check.assert_clean("status[]", "relationship", "relationship[]", "account[]", "status")


# --------------------------------------------------------------------------------------------
# search, statuses, profile
# --------------------------------------------------------------------------------------------


def test_search_v2_finds_statuses_accounts_and_hashtags(target, check):
    app = make_app(target.url(0), check)
    u = sign_up(target, check, app, 0)
    reader = sign_up(target, check, app, 1)
    word, tag = kit.unique_word("w"), kit.unique_word("t")
    st = u.m.status_post(f"hello {word} and #{tag}")
    target.drain()

    def found() -> object:
        r = reader.m.search_v2(word, result_type="statuses")
        return r if r.statuses else None

    res = kit.wait_until("search finds the new status", found)
    assert [str(s.id) for s in res.statuses] == [str(st.id)], res
    res = reader.m.search_v2(f"#{tag}")
    assert str(st.id) in [str(s.id) for s in res.statuses] and tag in [t.name for t in res.hashtags], res
    res = reader.m.search_v2(u.username, result_type="accounts")
    assert [str(x.id) for x in res.accounts] == [u.id] and res.accounts[0].acct == u.username, res
    looked = reader.m.account_lookup(u.username)
    assert str(looked.id) == u.id
    tagged = reader.m.timeline_hashtag(tag)
    assert [str(s.id) for s in tagged] == [str(st.id)]
    check.assert_clean("search", "account")


def test_status_rules_a_user_would_meet(target, check):
    app = make_app(target.url(0), check)
    u = sign_up(target, check, app, 0)
    other = sign_up(target, check, app, 1)
    st = u.m.status_post("mine")
    fetched = other.m.status(st.id)
    assert fetched.content and "mine" in fetched.content and fetched.account.acct == u.username

    with pytest.raises(MastodonNotFoundError):  # someone else's status: 404, as Mastodon
        other.m.status_delete(st.id)
    assert str(u.m.status(st.id).id) == str(st.id)
    with pytest.raises(MastodonAPIError) as e:
        u.m.status_post("x" * (kit.MAX_POST_LENGTH + 1))
    assert e.value.args[1] == 422, e.value.args
    with pytest.raises(MastodonAPIError) as e:
        u.m.status_post("secret", visibility="private")
    assert e.value.args[1] == 422, e.value.args
    unlisted = u.m.status_post("quietly", visibility="unlisted")
    assert unlisted.visibility == "unlisted"

    me = u.m.account_update_credentials(display_name="Ms Tester", note="I test #things")
    assert me.display_name == "Ms Tester"
    assert u.m.account(u.id).display_name == "Ms Tester"
    check.assert_clean("status", "account", "error")


def test_threads_favourites_boosts_notifications_and_markers(target, check):
    """Issue 11 through Mastodon.py's own methods: a reply and its context, favourite and
    boost (the wrapper) and their undoing (the original), who did them, the favourites list,
    notifications with their filters, dismiss and clear, markers and the unread count."""
    app = make_app(target.url(0), check)
    a = sign_up(target, check, app, 0, "ca")
    b = sign_up(target, check, app, 1, "cb")
    b.m.account_follow(a.id)
    root = a.m.status_post("a thread")
    reply = b.m.status_post(f"@{a.username} a reply", in_reply_to_id=root.id)
    assert str(reply.in_reply_to_id) == str(root.id) and str(reply.in_reply_to_account_id) == a.id
    assert [str(x.id) for x in reply.mentions] == [a.id]
    ctx = a.m.status_context(root.id)
    assert [str(s.id) for s in ctx.descendants] == [str(reply.id)] and ctx.ancestors == []
    assert [str(s.id) for s in b.m.status_context(reply.id).ancestors] == [str(root.id)]
    with pytest.raises(MastodonNotFoundError):
        b.m.status_post("to nothing", in_reply_to_id="1")

    fav = b.m.status_favourite(root.id)
    assert fav.favourited is True and fav.favourites_count == 1
    assert [str(x.id) for x in a.m.status_favourited_by(root.id)] == [b.id]
    assert [str(s.id) for s in b.m.favourites()] == [str(root.id)]
    boost = b.m.status_reblog(root.id)
    assert str(boost.reblog.id) == str(root.id) and str(boost.account.id) == b.id
    assert boost.reblog.reblogged is True and boost.reblog.reblogs_count == 1
    assert [str(x.id) for x in a.m.status_reblogged_by(root.id)] == [b.id]
    target.drain()

    notes = a.m.notifications()
    assert [(n.type, str(n.account.id)) for n in notes] == [
        ("reblog", b.id), ("favourite", b.id), ("mention", b.id), ("follow", b.id)]
    assert str(notes[0].status.id) == str(root.id)  # a reblog notification shows the original
    assert [n.type for n in a.m.notifications(types=["mention"])] == ["mention"]
    assert [n.type for n in a.m.notifications(exclude_types=["follow", "mention"])] == ["reblog", "favourite"]
    assert [n.type for n in a.m.notifications(limit=2)] == ["reblog", "favourite"]
    assert a.m.fetch_next(a.m.notifications(limit=2))[0].type == "mention"
    assert a.m.notifications(id=notes[2].id).type == "mention"
    assert a.m.notifications_unread_count().count == 4
    a.m.markers_set("notifications", notes[1].id)
    assert str(a.m.markers_get("notifications").notifications.last_read_id) == str(notes[1].id)
    assert a.m.notifications_unread_count().count == 1
    a.m.markers_set(["home"], [root.id])
    assert str(a.m.markers_get(["home", "notifications"]).home.last_read_id) == str(root.id)

    a.m.notifications_dismiss(notes[2].id)
    assert [n.type for n in a.m.notifications()] == ["reblog", "favourite", "follow"]
    original = b.m.status_unreblog(root.id)
    assert str(original.id) == str(root.id) and original.reblogged is False and original.reblogs_count == 0
    unfav = b.m.status_unfavourite(root.id)
    assert unfav.favourited is False and unfav.favourites_count == 0
    target.drain()
    assert [n.type for n in a.m.notifications()] == ["follow"]
    a.m.notifications_clear()
    assert a.m.notifications() == []
    check.assert_clean("status", "context", "account[]", "status[]", "notification[]", "notification",
                       "markers")


def test_instance_and_version(target, check):
    m = client(target.url(0), check)
    v1 = m.instance_v1()
    assert v1.uri and int(v1.version.split(" ")[0].split(".")[0]) >= 4, v1.version
    v2 = m.instance_v2()
    assert v2.configuration.statuses.max_characters == kit.MAX_POST_LENGTH
    assert v2.configuration.urls.streaming.startswith("ws://"), v2.configuration.urls
    assert m.retrieve_mastodon_version()
    assert m.verify_minimum_version("4.0.0", cached=True)
    info = m.instance()  # picks v2
    assert info.configuration.statuses.max_characters == kit.MAX_POST_LENGTH
    nodeinfo = m.instance_nodeinfo()
    assert nodeinfo.software.name == "homefeed"
    check.assert_clean("instance_v1", "instance_v2")


# --------------------------------------------------------------------------------------------
# scopes and revocation
# --------------------------------------------------------------------------------------------


def test_scopes_are_enforced(target, check):
    app = make_app(target.url(0), check)
    u = sign_up(target, check, app, 0)
    friend = sign_up(target, check, app, 1)

    read_app = make_app(target.url(0), check, scopes=["read"])
    ro = client(target.url(1), check, read_app)
    ro.log_in(u.email, u.password, scopes=["read"], allow_http=True)
    assert str(ro.account_verify_credentials().id) == u.id
    ro.timeline_home()
    with pytest.raises(MastodonAPIError) as e:
        ro.status_post("a read-only token cannot post")
    assert e.value.args[1] == 403, e.value.args
    theirs = friend.m.status_post("favourite me")
    for action in (ro.status_favourite, ro.status_reblog, ro.notifications_clear):
        with pytest.raises(MastodonAPIError) as e:
            action(theirs.id) if action != ro.notifications_clear else action()
        assert e.value.args[1] == 403, e.value.args
    assert ro.notifications() == [] and ro.favourites() == []  # read covers read:notifications

    ws_app = make_app(target.url(0), check, scopes=["read", "write:statuses"])
    ws = client(target.url(0), check, ws_app)
    ws.log_in(u.email, u.password, scopes=["read", "write:statuses"], allow_http=True)
    assert ws.status_post("write:statuses may post").id
    with pytest.raises(MastodonAPIError) as e:
        ws.account_follow(friend.id)
    assert e.value.args[1] == 403, e.value.args
    assert ws.status_reblog(theirs.id).reblog.id == theirs.id  # a boost is write:statuses
    with pytest.raises(MastodonAPIError) as e:
        ws.status_favourite(theirs.id)  # a favourite is write:favourites
    assert e.value.args[1] == 403, e.value.args
    assert friend.m.status(theirs.id).favourites_count == 0

    # asking more than the app was registered with is refused
    bad = client(target.url(0), check, read_app)
    with pytest.raises((MastodonIllegalArgumentError, MastodonAPIError)):
        bad.log_in(u.email, u.password, scopes=DEFAULT_SCOPES, allow_http=True)
    check.assert_clean("error")


def test_revoked_token_is_401_at_once_on_every_process(target, check):
    app = make_app(target.url(0), check)
    u = sign_up(target, check, app, 0)
    m = client(target.url(0), check, app)
    token = m.log_in(u.email, u.password, allow_http=True)
    users = [client(url, check, app, access_token=token) for url in target.urls]
    for x in users:
        assert str(x.account_verify_credentials().id) == u.id
    m.revoke_access_token(allow_http=True)
    for x in users:
        with pytest.raises(MastodonUnauthorizedError):
            x.account_verify_credentials()
        with pytest.raises(MastodonUnauthorizedError):
            x.status_post("after revocation")
    # the other token of the same user still works
    assert str(u.m.account_verify_credentials().id) == u.id
    check.assert_clean("error")


def test_a_token_never_acts_for_another_user(target, check):
    app = make_app(target.url(0), check)
    alice = sign_up(target, check, app, 0)
    bob = sign_up(target, check, app, 1)
    st = bob.m.status_post("bob's")
    with pytest.raises(MastodonNotFoundError):
        alice.m.status_delete(st.id)
    mine = alice.m.status_post("alice's")
    assert str(mine.account.id) == alice.id
    assert str(bob.m.status(st.id).id) == str(st.id)
    assert [str(s.id) for s in alice.m.account_statuses(bob.id)] == [str(st.id)]
    check.assert_clean()

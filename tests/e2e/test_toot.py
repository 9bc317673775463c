"""toot, unchanged, against a real homefeed (issue 10's proof), in both profiles.

Written against toot 0.52.1 (any 0.5x should do). The person at the keyboard is played by
``toot`` itself, run as a command (``.venv/bin/toot``, the console script pip installed) with
its own ``XDG_CONFIG_HOME`` so that it writes its app and token where a user's toot would,
and with no controlling terminal, so that ``toot login_cli`` reads the password from stdin as
it does in a script. What toot has no command for is done with toot's own library functions
(``toot.api``), which are what its commands call:

- ``api.create_app`` + ``api.register_account``: the sign-up (toot sends JSON: the app, the
  ``client_credentials`` token request and the account);
- ``api.home_timeline_generator``: the home timeline followed page by page through the
  ``Link`` header with toot's own regex (``rel="next"`` must come first), which the
  ``toot timeline`` command only does on an interactive terminal.

Every JSON body toot printed or returned is checked against ``tests/mastodon_schemas``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from toot import App, User
from toot import api as toot_api

from tests.e2e import mastodon_kit as kit
from tests.e2e.mastodon_kit import target  # noqa: F401  (the server fixture, per profile)

ROOT = Path(__file__).resolve().parents[2]
TOOT = str(ROOT / ".venv" / "bin" / "toot") if (ROOT / ".venv" / "bin" / "toot").exists() else shutil.which("toot")


def sign_up(base: str, prefix: str = "t") -> tuple[App, User, str]:
    """toot's registration path: an app (JSON), a client_credentials token (JSON), an
    account (JSON). Returns the app, the user with the token answered, and the email."""
    created = toot_api.create_app(base)
    kit.check_entity("credential_application", created)
    app = App("homefeed", base, created["client_id"], created["client_secret"])
    username = kit.unique_username(prefix)
    token = toot_api.register_account(app, username, kit.email_of(username), kit.PASSWORD)
    assert "access_token" in token, token
    kit.check_entity("token", token)
    return app, User("homefeed", username, token["access_token"]), kit.email_of(username)


def account_id(app: App, user: User) -> str:
    me = toot_api.verify_credentials(app, user).json()
    kit.check_entity("credential_account", me)
    assert me["username"] == user.username
    return me["id"]


class TootUser:
    """One person's toot: a config directory of their own, commands run as subprocesses."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.home.mkdir(parents=True, exist_ok=True)

    def run(self, *args: str, stdin: str | None = None, ok: bool = True) -> subprocess.CompletedProcess:
        assert TOOT, "the toot command is not installed (pip install -e '.[test]')"
        env = {k: v for k, v in os.environ.items() if not k.startswith("TOOT")}
        env.update({"XDG_CONFIG_HOME": str(self.home), "NO_COLOR": "1", "COLUMNS": "120",
                    "PYTHONIOENCODING": "utf-8"})
        p = subprocess.run([TOOT, *args], input=stdin, capture_output=True, text=True, env=env,
                           timeout=60, start_new_session=True)  # no tty: getpass reads stdin
        if ok:
            assert p.returncode == 0, f"toot {' '.join(args)} -> {p.returncode}\n{p.stdout}\n{p.stderr}"
        return p

    def json(self, *args: str) -> Any:
        out = self.run(*args, "--json").stdout
        try:
            return json.loads(out)
        except ValueError:
            pytest.fail(f"toot {' '.join(args)} --json printed no JSON: {out[:1000]!r}")

    def config(self) -> dict[str, Any]:
        return json.loads((self.home / "toot" / "config.json").read_text())

    def app_user(self) -> tuple[App, User]:
        """The app and token toot saved, for toot's library functions."""
        c = self.config()
        u = c["users"][c["active_user"]]
        a = c["apps"][u["instance"]]
        return App(**a), User(**u)


def toot_home_pages(app: App, user: User, limit: int) -> list[list[str]]:
    pages = []
    for batch in toot_api.home_timeline_generator(app, user, limit=limit):
        kit.check_entity("status[]", batch)
        assert len(batch) <= limit
        if batch:
            pages.append([s["id"] for s in batch])
        if len(pages) > 200:
            pytest.fail("more than 200 pages")
    return pages


def test_toot_logs_in_posts_follows_pages_searches_deletes(target, tmp_path):
    base = target.url(0)
    oracle = kit.HomeOracle()

    # the person who uses toot: signs up (toot's register path), then logs in with the CLI
    _, reg_user, email = sign_up(base, "tootuser")
    me = TootUser(tmp_path / "me")
    p = me.run("login_cli", "--instance", target.url(1), "--email", email, stdin=kit.PASSWORD + "\n")
    assert "Successfully logged in" in p.stdout, p.stdout + p.stderr
    whoami = me.json("whoami")
    kit.check_entity("credential_account", whoami)
    assert whoami["username"] == reg_user.username and whoami["acct"] == reg_user.username
    my_id = whoami["id"]
    oracle.account(my_id)
    app, user = me.app_user()

    # a wrong password: toot says the login failed
    other = TootUser(tmp_path / "other")
    bad = other.run("login_cli", "--instance", base, "--email", email, stdin="wrong password\n", ok=False)
    assert bad.returncode != 0 and "Login failed" in (bad.stdout + bad.stderr), bad.stdout + bad.stderr

    # people to follow: two authors and a celebrity with more followers than the threshold
    authors = {name: sign_up(target.url(i), name) for i, name in enumerate(("alice", "bob", "celeb"))}
    ids = {name: account_id(a, u) for name, (a, u, _) in authors.items()}
    for i in ids.values():
        oracle.account(i)
    for k in range(kit.CELEBRITY_THRESHOLD):
        fa, fu, _ = sign_up(target.url(k), "fan")
        r = toot_api.follow(fa, fu, ids["celeb"])
        kit.check_entity("relationship", r.json())
        oracle.follow(account_id(fa, fu), ids["celeb"])

    for name in ("alice", "bob", "celeb"):
        rel = me.json("follow", authors[name][1].username)  # search v2 + follow
        kit.check_entity("relationship", rel)
        assert rel["following"] is True and rel["id"] == ids[name], rel
        oracle.follow(my_id, ids[name])
    following = json.loads(me.run("following", "--json").stdout)  # Link-paged, toot's regex
    kit.check_entity("account[]", following)
    assert sorted(a["id"] for a in following) == sorted(ids.values())
    target.drain()
    whois = me.json("whois", authors["celeb"][1].username)
    kit.check_entity("account", whois)
    assert whois["followers_count"] == kit.CELEBRITY_THRESHOLD + 1

    # posts: mine through `toot post` (JSON body, Idempotency-Key), theirs through toot's API
    word = kit.unique_word("toot")
    posted = me.json("post", f"my first toot {word} #tootest")
    kit.check_entity("status", posted)
    assert posted["account"]["id"] == my_id and posted["url"], posted
    oracle.post(my_id, posted["id"])
    for r in range(4):
        for name in ("alice", "celeb", "bob"):
            a, u, _ = authors[name]
            st = toot_api.post_status(a, u, f"{name} says {r}").json()
            kit.check_entity("status", st)
            oracle.post(ids[name], st["id"])
    second = me.json("post", "and a second one", "--visibility", "unlisted")
    assert second["visibility"] == "unlisted"
    oracle.post(my_id, second["id"])
    expected = oracle.home(my_id)
    assert len(expected) > kit.TIMELINE_CAP

    target.drain()
    kit.wait_until("toot sees the whole home timeline",
                   lambda: [i for p in toot_home_pages(app, user, 20) for i in p] == expected)
    for limit in (3, 4, 20):
        pages = toot_home_pages(app, user, limit)
        flat = [i for p in pages for i in p]
        assert flat == expected, f"limit={limit}: pages {pages}, want {expected}"
        assert all(len(p) == limit for p in pages[:-1]), pages

    first = me.json("timelines", "home", "--limit", "3")
    kit.check_entity("status[]", first)
    assert [s["id"] for s in first] == expected[:3]

    # search for my word, then delete that status
    found = me.json("search", word)
    kit.check_entity("search", found)
    assert [s["id"] for s in found["statuses"]] == [posted["id"]], found
    deleted = me.json("delete", posted["id"])
    kit.check_entity("status", deleted)
    assert deleted["id"] == posted["id"] and word in deleted.get("text", ""), deleted
    oracle.delete(posted["id"])

    # unfollow bob
    rel = me.json("unfollow", authors["bob"][1].username)
    assert rel["following"] is False
    oracle.unfollow(my_id, ids["bob"])
    expected = oracle.home(my_id)
    target.drain()
    kit.wait_until("home timeline after the delete and the unfollow",
                   lambda: [i for p in toot_home_pages(app, user, 4) for i in p] == expected)
    kit.wait_until("search no longer finds the deleted status",
                   lambda: me.json("search", word)["statuses"] == [])


def test_toot_reads_the_instance_and_public_timelines(target, tmp_path):
    info = TootUser(tmp_path / "anon").json("instance", target.url(0))
    kit.check_entity("instance_v1", info)
    assert info["uri"] and int(info["version"].split(" ")[0].split(".")[0]) >= 4
    assert info["urls"]["streaming_api"].startswith("ws://")

    app, user, _ = sign_up(target.url(0), "pub")
    tag = kit.unique_word("tag")
    st = toot_api.post_status(app, user, f"hello #{tag}").json()
    target.drain()
    tagged = kit.wait_until("the tag timeline has the status", lambda: [
        s["id"] for batch in toot_api.anon_tag_timeline_generator(target.url(1), tag, limit=5) for s in batch])
    assert tagged == [st["id"]]
    public = next(toot_api.anon_public_timeline_generator(target.url(0), local=True, limit=5))
    kit.check_entity("status[]", public)


def test_toot_replies_reads_the_thread_favourites_boosts_and_notifications(target, tmp_path):
    """Issue 11 with toot's commands: a reply (``post --reply-to``), the ``thread``,
    ``favourite``/``unfavourite``, ``reblog``/``unreblog`` and the ``notifications`` they
    make for the author (also as the human-readable list a person reads)."""
    author_app, author, author_email = sign_up(target.url(0), "tauthor")
    author_id = account_id(author_app, author)
    _, reg_user, email = sign_up(target.url(1), "treader")
    me = TootUser(tmp_path / "reader")
    me.run("login_cli", "--instance", target.url(1), "--email", email, stdin=kit.PASSWORD + "\n")
    my_id = me.json("whoami")["id"]
    assert me.json("follow", author.username)["following"] is True

    root = toot_api.post_status(author_app, author, "a thread begins").json()
    reply = me.json("post", f"@{author.username} and goes on", "--reply-to", root["id"])
    kit.check_entity("status", reply)
    assert reply["in_reply_to_id"] == root["id"] and reply["in_reply_to_account_id"] == author_id
    assert [m["id"] for m in reply["mentions"]] == [author_id]
    thread = me.json("thread", reply["id"])
    kit.check_entity("context", thread)
    assert [s["id"] for s in thread["ancestors"]] == [root["id"]] and thread["descendants"] == []

    fav = me.json("favourite", root["id"])
    kit.check_entity("status", fav)
    assert fav["favourited"] is True and fav["favourites_count"] == 1
    boost = me.json("reblog", root["id"])
    kit.check_entity("status", boost)
    assert boost["reblog"]["id"] == root["id"] and boost["account"]["id"] == my_id
    target.drain()

    notes = toot_api.get_notifications(author_app, author).json()
    kit.check_entity("notification[]", notes)
    assert [(n["type"], n["account"]["id"]) for n in notes] == [
        ("reblog", my_id), ("favourite", my_id), ("mention", my_id), ("follow", my_id)]
    # the person's own view of notifications, from toot's command
    them = TootUser(tmp_path / "author")
    them.run("login_cli", "--instance", target.url(0), "--email", author_email, stdin=kit.PASSWORD + "\n")
    listed = them.json("notifications")
    assert [n["type"] for n in listed] == ["reblog", "favourite", "mention", "follow"]
    text = them.run("notifications").stdout
    assert reg_user.username in text and "and goes on" in text, text

    unboosted = me.json("unreblog", root["id"])
    assert unboosted["id"] == root["id"] and unboosted["reblogged"] is False
    unfav = me.json("unfavourite", root["id"])
    assert unfav["favourited"] is False and unfav["favourites_count"] == 0
    target.drain()
    assert [n["type"] for n in them.json("notifications")] == ["mention", "follow"]

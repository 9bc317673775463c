"""params.py: what Mastodon.py (form, key[]=, '1'/'0') and toot (JSON, true/false) send."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from homefeed.domain.mastodon.errors import MastodonInputError
from homefeed.domain.mastodon.params import MAX_PARAMS, Params


def test_mastodonpy_status_post_form() -> None:
    p = Params.from_body(
        "application/x-www-form-urlencoded",
        b"status=hello+%23world&visibility=unlisted&sensitive=1&media_ids%5B%5D=1&media_ids%5B%5D=2&lang=en",
    )
    assert p.get_str("status") == "hello #world"
    assert p.get_str("visibility", choices=["public", "unlisted"]) == "unlisted"
    assert p.get_bool("sensitive") is True
    assert p.get_list("media_ids") == ["1", "2"]
    assert p.get_str("spoiler_text", "") == ""


def test_toot_status_post_json() -> None:
    body = json.dumps({"status": "hi", "visibility": "public", "sensitive": False,
                       "in_reply_to_id": None, "media_ids": [], "poll": {"options": ["a", "b"],
                                                                         "expires_in": 300}})
    p = Params.from_body("application/json; charset=utf-8", body.encode())
    assert p.get_str("status", required=True) == "hi"
    assert p.get_bool("sensitive", True) is False
    assert p.get_str("in_reply_to_id") is None and "in_reply_to_id" not in p
    assert p.get_list("media_ids") == []
    assert p.get_params("poll").get_list("options") == ["a", "b"]
    assert p.get_params("poll").get_int("expires_in") == 300


def test_nested_form_names() -> None:
    p = Params.from_query("poll[options][]=a&poll[options][]=b&poll[multiple]=true&id=7")
    assert p.get_params("poll").get_list("options") == ["a", "b"]
    assert p.get_params("poll").get_bool("multiple") is True
    assert p.get_list("id") == ["7"]  # Array(params[:id])


@pytest.mark.parametrize("query", ["a[]=1&a=2", "a=1&a[]=2", "a[b]=1&a[]=2", "a[][b]=1", "a[b][c][d][e]=1"])
def test_conflicting_or_unsupported_structure_is_400(query: str) -> None:
    with pytest.raises(MastodonInputError) as e:
        Params.from_query(query)
    assert e.value.status == 400


def test_repeated_plain_key_last_wins_and_odd_names_ignored() -> None:
    p = Params.from_query("a=1&a=2&]x=3&=4")
    assert p.get_str("a") == "2" and p.as_dict() == {"a": "2"}


@pytest.mark.parametrize("v", ["0", "f", "F", "false", "FALSE", "off", "OFF", "False", False, 0])
def test_false_values(v: object) -> None:
    assert Params({"b": v}).get_bool("b", True) is False


@pytest.mark.parametrize("v", ["1", "t", "true", "True", "TRUE", "on", "yes", "anything", True, 1])
def test_true_values(v: object) -> None:
    assert Params({"b": v}).get_bool("b", False) is True


@pytest.mark.parametrize("v", [None, ""])
def test_blank_bool_is_default(v: object) -> None:
    assert Params({"b": v}).get_bool("b", True) is True
    assert Params({"b": v}).get_bool("b", False) is False


def test_bool_of_list_is_422() -> None:
    with pytest.raises(MastodonInputError) as e:
        Params({"b": ["1"]}).get_bool("b")
    assert e.value.status == 422 and e.value.to_entity() == {"error": "b must be a boolean"}


def test_get_str_types() -> None:
    p = Params({"n": 12, "l": ["x"], "t": True, "d": {"a": 1}, "blank": "  "})
    assert p.get_str("n") == "12"
    for name in ("l", "t", "d"):
        with pytest.raises(MastodonInputError, match=name):
            p.get_str(name)
    with pytest.raises(MastodonInputError, match="blank"):
        p.get_str("blank", required=True)
    with pytest.raises(MastodonInputError, match="missing"):
        p.get_str("missing", required=True)
    with pytest.raises(MastodonInputError, match="at most 1"):
        Params({"s": "ab"}).get_str("s", max_length=1)
    with pytest.raises(MastodonInputError, match="one of"):
        Params({"s": "private"}).get_str("s", choices=["public", "unlisted"])


def test_get_int() -> None:
    p = Params({"a": "42", "b": 7, "c": "x", "d": True, "e": "-3", "f": "1.5", "g": ""})
    assert p.get_int("a") == 42 and p.get_int("b") == 7 and p.get_int("e") == -3
    assert p.get_int("g", 5) == 5 and p.get_int("missing") is None
    for name in ("c", "d", "f"):
        with pytest.raises(MastodonInputError):
            p.get_int(name)
    with pytest.raises(MastodonInputError, match="at least 0"):
        p.get_int("e", minimum=0)
    with pytest.raises(MastodonInputError, match="at most 10"):
        p.get_int("a", maximum=10)


def test_get_list_rejects_nested() -> None:
    with pytest.raises(MastodonInputError):
        Params({"id": [["1"]]}).get_list("id")
    assert Params({"id": [1, "2"]}).get_list("id") == ["1", "2"]


def test_json_errors() -> None:
    with pytest.raises(MastodonInputError) as e:
        Params.from_json(b"{not json")
    assert e.value.status == 400
    with pytest.raises(MastodonInputError) as e:
        Params.from_json(b"[1, 2]")
    assert e.value.status == 422
    assert Params.from_json(b"").as_dict() == {}
    with pytest.raises(MastodonInputError):
        Params.from_json(b"[" * 100000)


def test_too_many_params() -> None:
    with pytest.raises(MastodonInputError):
        Params.from_query("&".join(f"k{i}=1" for i in range(MAX_PARAMS + 5)))


def test_merge_order_body_over_query() -> None:
    q = Params.from_query("limit=5&local=true")
    b = Params.from_json(b'{"limit": 10}')
    assert q.merged(b).get_int("limit") == 10 and q.merged(b).get_bool("local")


@given(st.lists(st.tuples(st.text(max_size=12), st.text(max_size=12)), max_size=30))
def test_from_pairs_never_raises_anything_but_input_errors(pairs: list[tuple[str, str]]) -> None:
    try:
        p = Params.from_pairs(pairs)
    except MastodonInputError:
        return
    for name in p.as_dict():
        for getter in (p.get_str, p.get_bool, p.get_list, p.get_int, p.get_params):
            try:
                getter(name)
            except MastodonInputError:
                pass


def test_multipart_must_go_through_from_pairs() -> None:
    with pytest.raises(ValueError, match="from_pairs"):
        Params.from_body("multipart/form-data; boundary=x", b"--x--")
    assert Params.from_body(None, b"a=1").get_str("a") == "1"

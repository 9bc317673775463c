"""Request parameters as Mastodon apps send them, decoded to one shape.

The same route gets different encodings from different apps (checked in their source, see
docs/mastodon-clients.md):

* Mastodon.py sends form-encoded bodies (``requests`` ``data=``) and query strings, lists as
  repeated ``key[]=`` and booleans as ``'1'``/``'0'``; it switches to a JSON body for polls
  and media attributes;
* toot sends JSON bodies (``json=``) with real ``true``/``false``, and query strings with
  ``"true"``/``"false"``; its profile update is multipart when a file is attached.

Rails merges query, path and body parameters into one ``params`` hash and parses nested
names Rack's way (``a[]``, ``a[b]``, ``a[b][]``); ``ActiveModel::Type::Boolean`` reads
booleans. This module does the same, so each route reads ``get_bool("sensitive")`` and gets
the same answer whatever the app sent. Parameters a route does not ask for are ignored, as
Rails ignores unpermitted ones (Mastodon.py adds ``lang``, search adds ``exclude_unreviewed``).

Errors are ``MastodonInputError``: 422 ``{"error": ...}`` for a value of the wrong kind, 400 for
a body that cannot be parsed at all (Rails' ``ParseError``/``BadRequest``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl

from homefeed.domain.mastodon.errors import MastodonInputError

#: ``ActiveModel::Type::Boolean::FALSE_VALUES`` as strings, plus ``"False"``: Rails reads
#: Python's ``str(False)`` as true (anything not listed is true), which no Python client means.
FALSE_STRINGS = frozenset({"0", "f", "F", "false", "FALSE", "off", "OFF", "False"})
_NAME_RE = re.compile(r"([^\[\]]+)((?:\[[^\[\]]*\])*)\Z")
_SEGMENT_RE = re.compile(r"\[([^\[\]]*)\]")
_INT_RE = re.compile(r"[+-]?[0-9]{1,19}")
#: Bounds against hostile bodies: the HTTP layer limits bytes; these limit structure.
MAX_PARAMS = 1000
MAX_DEPTH = 4


def _bad_structure(name: str) -> MastodonInputError:
    return MastodonInputError(f"Invalid parameters: conflicting or malformed {name[:60]!r}", 400)


def _insert(root: dict[str, Any], name: str, value: str) -> None:
    """Place one ``name=value`` pair Rack's way: ``a[]`` appends, ``a[b]`` nests."""
    m = _NAME_RE.match(name)
    if not m:
        return  # a name Rack would not parse into anything a route reads: ignored
    keys = [m.group(1)] + _SEGMENT_RE.findall(m.group(2))
    if len(keys) > MAX_DEPTH:
        raise _bad_structure(name)
    node: dict[str, Any] = root
    for i, key in enumerate(keys):
        last = i == len(keys) - 1
        nxt_is_append = not last and keys[i + 1] == ""
        if key == "":
            # "[]" is only meaningful last ("a[]" / "a[b][]"); "a[][b]" is not supported.
            raise _bad_structure(name)
        if last:
            if isinstance(node.get(key), (list, dict)):
                raise _bad_structure(name)
            node[key] = value
            return
        if nxt_is_append:
            if i + 1 != len(keys) - 1:
                raise _bad_structure(name)
            existing = node.setdefault(key, [])
            if not isinstance(existing, list):
                raise _bad_structure(name)
            existing.append(value)
            return
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise _bad_structure(name)
        node = child


class Params:
    """One request's parameters (query + path + body merged), with typed accessors.

    Values are what the encoding gave: strings (form, query), or JSON values (str, int,
    float, bool, None, list, dict). Accessors convert as Rails would and raise
    ``MastodonInputError`` for values that cannot mean what the route asks for.
    """

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, Any] | None = None) -> None:
        self._data: dict[str, Any] = dict(data or {})

    # -- construction -------------------------------------------------------------------

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[str, str]]) -> Params:
        """From decoded form or query pairs (Starlette's ``multi_items()``, ``parse_qsl``)."""
        root: dict[str, Any] = {}
        for n, (name, value) in enumerate(pairs):
            if n >= MAX_PARAMS:
                raise MastodonInputError(f"Too many parameters (at most {MAX_PARAMS})", 400)
            _insert(root, name, value)
        return cls(root)

    @classmethod
    def from_query(cls, query: str | bytes) -> Params:
        """From a raw query string or ``application/x-www-form-urlencoded`` body."""
        text = query.decode("utf-8", "replace") if isinstance(query, bytes) else query
        try:
            pairs = parse_qsl(text, keep_blank_values=True, max_num_fields=MAX_PARAMS)
        except ValueError:
            raise MastodonInputError(f"Too many parameters (at most {MAX_PARAMS})", 400) from None
        return cls.from_pairs(pairs)

    @classmethod
    def from_json(cls, body: bytes | str) -> Params:
        """From a JSON body: it must be an object (Rails would wrap anything else in
        ``_json``, where no route reads it; saying so is clearer)."""
        if not body or (isinstance(body, (bytes, str)) and not body.strip()):
            return cls()
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):
            raise MastodonInputError("Error occurred while parsing request parameters", 400) from None
        if not isinstance(data, dict):
            raise MastodonInputError("The request body must be a JSON object", 422)
        return cls(data)

    @classmethod
    def from_body(cls, content_type: str | None, body: bytes) -> Params:
        """From a body by its ``Content-Type``: JSON, or form-encoded (also the default, as
        ``requests`` sends ``data=`` form-encoded). Multipart bodies are parsed by the HTTP
        layer and passed to ``from_pairs``."""
        ctype = (content_type or "").split(";", 1)[0].strip().lower()
        if ctype == "application/json" or ctype.endswith("+json"):
            return cls.from_json(body)
        if ctype.startswith("multipart/"):
            # A programming error, not bad input: the route must parse multipart itself.
            raise ValueError("multipart bodies are parsed by the HTTP layer; use from_pairs")
        return cls.from_query(body)

    def merged(self, *others: Params) -> Params:
        """These parameters overlaid by ``others`` (Rails: query, then body, then path)."""
        data = dict(self._data)
        for o in others:
            data.update(o._data)
        return Params(data)

    # -- access ------------------------------------------------------------------------

    def __contains__(self, name: object) -> bool:
        return name in self._data and self._data[name] is not None

    def raw(self, name: str) -> Any:
        """The value as decoded, or ``None``."""
        return self._data.get(name)

    def as_dict(self) -> dict[str, Any]:
        """A copy of everything (for logging or passing to a paging parser)."""
        return dict(self._data)

    def get_str(
        self,
        name: str,
        default: str | None = None,
        *,
        required: bool = False,
        max_length: int | None = None,
        choices: Iterable[str] | None = None,
    ) -> str | None:
        """A string parameter. JSON numbers become their text (Rails casts them); a list,
        object or boolean is a 422. ``required`` refuses missing and blank values."""
        v = self._data.get(name)
        if v is None:
            if required:
                raise MastodonInputError(f"Validation failed: {name} can't be blank")
            return default
        if isinstance(v, bool) or not isinstance(v, (str, int, float)):
            raise MastodonInputError(f"{name} must be a string")
        s = v if isinstance(v, str) else json.dumps(v)
        if required and not s.strip():
            raise MastodonInputError(f"Validation failed: {name} can't be blank")
        if max_length is not None and len(s) > max_length:
            raise MastodonInputError(f"{name} must be at most {max_length} characters")
        if choices is not None:
            allowed = tuple(choices)
            if s not in allowed:
                raise MastodonInputError(f"{name} must be one of: {', '.join(allowed)}")
        return s

    def get_bool(self, name: str, default: bool = False) -> bool:
        """A boolean as ``ActiveModel::Type::Boolean`` reads it: missing, null or ``""`` is
        the default; ``0 f F false FALSE off OFF`` (and ``False``) are false; any other
        string is true (``1``, ``true``, ``True``, ``on``, ``yes``...). JSON booleans and
        the numbers 0 and 1 mean themselves."""
        v = self._data.get(name)
        if v is None or v == "":
            return default
        if isinstance(v, bool):
            return v
        if isinstance(v, (int, float)):
            return v != 0
        if isinstance(v, str):
            return v not in FALSE_STRINGS
        raise MastodonInputError(f"{name} must be a boolean")

    def get_list(self, name: str) -> list[str]:
        """A list of strings: ``name[]=a&name[]=b``, a JSON array of strings or numbers, or
        one value (Rails' ``Array(params[:id])``: ``id=1`` is ``["1"]``). Missing is ``[]``."""
        v = self._data.get(name)
        if v is None:
            return []
        items = v if isinstance(v, list) else [v]
        out: list[str] = []
        for item in items:
            if isinstance(item, bool) or not isinstance(item, (str, int, float)):
                raise MastodonInputError(f"{name} must be a list of strings")
            out.append(item if isinstance(item, str) else json.dumps(item))
        return out

    def get_int(
        self,
        name: str,
        default: int | None = None,
        *,
        minimum: int | None = None,
        maximum: int | None = None,
    ) -> int | None:
        """An integer: decimal digits with an optional sign, or a JSON integer. Out of
        ``[minimum, maximum]`` is a 422 (use pagination.parse_limit for ``limit``, which
        clamps as Mastodon does)."""
        v = self._data.get(name)
        if v is None or v == "":
            return default
        if isinstance(v, bool):
            raise MastodonInputError(f"{name} must be an integer")
        if isinstance(v, int):
            n = v
        elif isinstance(v, str) and _INT_RE.fullmatch(v.strip()):
            n = int(v.strip())
        else:
            raise MastodonInputError(f"{name} must be an integer")
        if minimum is not None and n < minimum:
            raise MastodonInputError(f"{name} must be at least {minimum}")
        if maximum is not None and n > maximum:
            raise MastodonInputError(f"{name} must be at most {maximum}")
        return n

    def get_params(self, name: str) -> Params:
        """A nested hash (``poll[options][]=``, or a JSON object) as ``Params``."""
        v = self._data.get(name)
        if v is None:
            return Params()
        if not isinstance(v, dict):
            raise MastodonInputError(f"{name} must be an object")
        return Params(v)

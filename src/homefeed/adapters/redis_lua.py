"""Lua scripts of the Redis timeline cache, run by EVALSHA.

The scripts live in ``adapters/lua/*.lua`` (package data), read once per process with
``importlib.resources``; ``lua/timeline_lib.lua`` holds the helpers every script starts with
and the notes on the list layout they keep.
"""

from __future__ import annotations

import functools
import hashlib
from importlib import resources
from typing import Any, Sequence

from redis.exceptions import NoScriptError


@functools.cache
def lua_source(name: str) -> str:
    """The text of ``lua/<name>.lua``."""
    return (resources.files("homefeed.adapters") / "lua" / f"{name}.lua").read_text("utf-8")


class LuaScript:
    """A Lua script called by EVALSHA, loaded on demand (after a restart or SCRIPT FLUSH the
    server answers NOSCRIPT; the call is then retried once after loading).

    ``parts``: the names of the ``.lua`` files it is made of, after ``timeline_lib``.
    ``cross_slot``: the variant run against a Cluster node over keys of many slots that the
    node serves (``allow-cross-slot-keys``, Redis >= 7.0)."""

    def __init__(self, *parts: str, cross_slot: bool = False) -> None:
        shebang = "#!lua flags=allow-cross-slot-keys\n" if cross_slot else ""
        body = "".join(lua_source(p) for p in ("timeline_lib", *parts))
        self.src = (shebang + body).encode()
        self.sha = hashlib.sha1(self.src).hexdigest()
        self._parts = parts
        self._cross: LuaScript | None = None

    @property
    def cross(self) -> "LuaScript":
        if self._cross is None:
            self._cross = LuaScript(*self._parts, cross_slot=True)
        return self._cross

    async def load(self, client: Any) -> None:
        await client.script_load(self.src)  # a cluster client loads it on every primary

    async def __call__(self, client: Any, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        return await self.call_args(client, (len(keys), *keys, *args))

    async def call_args(self, client: Any, numkeys_keys_args: tuple[Any, ...], **kw: Any) -> Any:
        try:
            return await client.execute_command("EVALSHA", self.sha, *numkeys_keys_args, **kw)
        except NoScriptError:
            await self.load(client)
            return await client.execute_command("EVALSHA", self.sha, *numkeys_keys_args, **kw)

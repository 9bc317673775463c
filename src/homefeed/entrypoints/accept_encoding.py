"""Does a client accept a gzip-compressed answer? One rule for every route that serves
compressed bytes (the web client's files, the kept Mastodon home renderings)."""

from __future__ import annotations


def accepts_gzip(value: bytes) -> bool:
    """Does an ``Accept-Encoding`` value accept gzip? (RFC 9110, 12.5.3: ``gzip`` or
    ``x-gzip`` listed with a q-value above 0, or ``*`` above 0 when gzip is not listed; a q
    of 0 refuses.) Answers are kept per value (clients send one of a few)."""
    got = _ACCEPTS.get(value)
    if got is None:
        named = star = None
        for item in value.decode("latin-1").lower().split(","):
            coding, _, params = item.partition(";")
            coding = coding.strip()
            q = 1.0
            for param in params.split(";"):
                k, _, v = param.partition("=")
                if k.strip() == "q":
                    try:
                        q = float(v.strip())
                    except ValueError:
                        q = 0.0
            if coding in ("gzip", "x-gzip"):
                named = q if named is None else max(named, q)
            elif coding == "*":
                star = q
        got = (named > 0) if named is not None else (star is not None and star > 0)
        if len(_ACCEPTS) > 1000:
            _ACCEPTS.clear()
        _ACCEPTS[value] = got
    return got


_ACCEPTS: dict[bytes, bool] = {}

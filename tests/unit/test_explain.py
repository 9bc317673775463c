"""``explain.describe``: an error at start-up becomes one line naming the backend, its
address without the password, and the setting to fix."""

from __future__ import annotations

import pytest

from homefeed.entrypoints import explain


def _raised_in(module: str, exc: BaseException) -> BaseException:
    """``exc`` with a traceback through a frame of ``module`` (as a driver would raise it)."""
    namespace = {"__name__": module}
    exec("def boom(e):\n    raise e\n", namespace)
    try:
        namespace["boom"](exc)
    except BaseException as caught:  # noqa: BLE001
        return caught
    raise AssertionError("unreachable")


def test_passwords_are_hidden() -> None:
    assert explain.redact("postgresql://me:s3cret@db:5432/x") == "postgresql://me:***@db:5432/x"
    assert explain.redact("redis://db:6379/0") == "redis://db:6379/0"


def test_an_unknown_redis_url_parameter_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOMEFEED_CACHE_URL", "redis://127.0.0.1:6379/0?bogus=1")
    exc = _raised_in("redis.asyncio.connection",
                     TypeError("AbstractConnection.__init__() got an unexpected keyword argument 'bogus'"))
    line = explain.describe(exc)
    assert line.startswith("unknown parameter 'bogus' in HOMEFEED_CACHE_URL"), line
    assert "\n" not in line


def test_an_unreachable_backend_names_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOMEFEED_CACHE_URL", "redis://:pw@127.0.0.1:1/0")
    exc = _raised_in("redis.asyncio.connection", ConnectionRefusedError("Connection refused"))
    line = explain.describe(exc)
    assert "Redis" in line and "HOMEFEED_CACHE_URL" in line and "pw" not in line, line


def test_a_missing_optional_package_names_the_extra() -> None:
    line = explain.describe(ModuleNotFoundError("No module named 'matplotlib'", name="matplotlib"))
    assert line.endswith("pip install 'homefeed[bench]'"), line
    assert explain.missing_extra(ModuleNotFoundError("x", name="starlette")) is None


def test_anything_else_is_its_first_line_and_a_pointer_to_debug() -> None:
    line = explain.describe(RuntimeError("first\nsecond"))
    assert line == "RuntimeError: first (run with --debug for the traceback)"

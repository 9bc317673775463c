"""homefeed: a self-hostable timeline service (DDIA chapter 1, built for real)."""

from __future__ import annotations


def __getattr__(name: str) -> str:
    """``homefeed.__version__``, read from the installed package's metadata when asked (the
    version lives in pyproject.toml only; reading metadata costs milliseconds, so not at
    every import)."""
    if name != "__version__":
        raise AttributeError(f"module 'homefeed' has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("homefeed")
    except PackageNotFoundError:  # a source tree that is not installed
        return "0+unknown"

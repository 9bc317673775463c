"""homefeed: a self-hostable timeline service (DDIA chapter 1, built for real)."""

__version__ = "0.1.0"

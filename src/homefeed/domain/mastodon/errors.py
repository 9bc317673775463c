"""The one error the Mastodon vocabulary raises.

It subclasses homefeed's ``InvalidInput`` so the existing error mapping already answers 422
and changes nothing; the Mastodon routes render it as ``{"error": message}``, the shape
every Mastodon client reads (toot shows ``error_description`` or ``error``; Mastodon.py puts
``error`` in its exception).
"""

from __future__ import annotations

from homefeed.domain.errors import InvalidInput


class MastodonInputError(InvalidInput):
    """Bad input to a Mastodon route: 422 ``{"error": message}`` unless ``status`` says otherwise."""

    code = "unprocessable_entity"
    status = 422

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status

    def to_entity(self) -> dict[str, str]:
        """Mastodon's Error entity for this error."""
        return {"error": self.message}

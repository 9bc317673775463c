"""Accounts: one user model for both APIs. A user registered through ``POST /v1/users`` is a
Mastodon account (username = handle) and the reverse; what ``POST /api/v1/accounts`` adds is
an email (unique ignoring case) and a password, so the user can log in again with OAuth.

Passwords are hashed with argon2id (argon2-cffi; its RFC 9106 "low memory" profile: 64 MiB,
3 passes) in a worker thread: one hash or check costs tens of milliseconds of CPU, which
must not stall the event loop. Repeated failed log-ins are slowed per account and per
address with the rate limiter (``LoginGuard``): a guess is never cheap."""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from typing import TYPE_CHECKING, Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from homefeed.config import RateLimit
from homefeed.domain.errors import Conflict, Forbidden, HomefeedError, InvalidInput
from homefeed.domain.mastodon.errors import MastodonInputError
from homefeed.domain.model import User
from homefeed.domain.oauth import AccessToken
from homefeed.domain.text import validate_display_name, validate_handle
from homefeed.ports import RateLimiter

if TYPE_CHECKING:
    from homefeed.service_layer.services import Homefeed

MIN_PASSWORD = 8
MAX_PASSWORD = 1024
MAX_NOTE = 500
EMAIL_RE = re.compile(r"[^@\s]{1,64}@[^@\s]+\.[^@\s]+")

_hasher = PasswordHasher()  # argon2id, RFC 9106 low-memory profile
#: Verified against when the login names nobody, so that the answer takes as long as for a
#: real account (no user enumeration by timing).
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


class TooManyAttempts(HomefeedError):
    """Too many failed log-ins for this account or address: wait ``retry_after`` seconds."""

    code = "too_many_requests"
    status = 429

    def __init__(self, retry_after: float) -> None:
        super().__init__("Too many failed log-ins: try again later")
        self.retry_after = max(1, int(retry_after + 0.999))


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_hasher.hash, password)


async def check_password(stored: str | None, password: str) -> bool:
    def verify() -> bool:
        try:
            return _hasher.verify(stored or _DUMMY_HASH, password) and stored is not None
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    return await asyncio.to_thread(verify)


def validate_password(password: Any) -> str:
    if not isinstance(password, str) or not password:
        raise MastodonInputError("Validation failed: Password can't be blank")
    if len(password) < MIN_PASSWORD:
        raise MastodonInputError(f"Validation failed: Password is too short (minimum is {MIN_PASSWORD} characters)")
    if len(password) > MAX_PASSWORD:
        raise MastodonInputError(f"Validation failed: Password is too long (maximum is {MAX_PASSWORD} characters)")
    return password


def validate_email(email: Any) -> str:
    if not isinstance(email, str) or len(email) > 254 or not EMAIL_RE.fullmatch(email):
        raise MastodonInputError("Validation failed: Email is invalid")
    return email


class LoginGuard:
    """Slows repeated failed log-ins. Each failure counts once against the account and once
    against the client's address (an address gets five times an account's allowance: many
    people share one); while either is over its limit, log-ins there are refused with 429
    before the password is even checked."""

    def __init__(self, limiter: RateLimiter, per_account: RateLimit) -> None:
        self.limiter = limiter
        self.account = (per_account.rate, per_account.burst)
        self.address = (per_account.rate * 5, per_account.burst * 5)
        #: key -> monotonic time until which log-ins there are refused (this process).
        self._blocked: dict[str, float] = {}

    def _keys(self, account: str, address: str | None) -> list[tuple[str, float, int]]:
        keys = [(f"login:account:{account}", *self.account)]
        if address:
            keys.append((f"login:address:{address}", *self.address))
        return keys

    def check(self, account: str, address: str | None) -> None:
        """``account``: the user id when the login names a user (so its username and its
        email share one allowance), else the login as typed, lowercased."""
        now = time.monotonic()
        waits = [self._blocked.get(k, 0.0) - now for k, _, _ in self._keys(account, address)]
        wait = max(waits)
        if wait > 0:
            raise TooManyAttempts(wait)

    async def failed(self, account: str, address: str | None) -> None:
        keys = self._keys(account, address)
        waits = await self.limiter.hit_many(keys)
        now = time.monotonic()
        if len(self._blocked) > 100_000:
            self._blocked.clear()
        for (key, _, _), wait in zip(keys, waits):
            if wait > 0:
                self._blocked[key] = now + wait
        if max(waits) > 0:
            raise TooManyAttempts(max(waits))


class Accounts:
    """Registration, log-in and profile use cases over ``Homefeed``'s record store."""

    def __init__(self, hf: Homefeed, guard: LoginGuard) -> None:
        self.hf = hf
        self.guard = guard

    async def register(
        self, username: Any, email: Any, password: Any, agreement: bool, display_name: Any,
        token: AccessToken,
    ) -> User:
        """``POST /api/v1/accounts``: a new user with its first token (``token.user_id``
        is filled in by the store). 422 for bad input, as Mastodon."""
        if self.hf.settings.registrations != "open":
            raise Forbidden("Registrations are closed on this server")
        try:
            handle = validate_handle(username)
        except InvalidInput as exc:
            raise MastodonInputError(f"Validation failed: Username {exc.message}") from None
        email = validate_email(email)
        password = validate_password(password)
        if not agreement:
            raise MastodonInputError("Validation failed: Agreement must be accepted")
        try:
            name = validate_display_name(display_name, handle)
        except InvalidInput as exc:
            raise MastodonInputError(exc.message) from None
        pw_hash = await hash_password(password)
        try:
            return await self.hf.store.create_account(handle, name, email, pw_hash, token)
        except Conflict as exc:
            # Mastodon answers a taken username or email with 422 and its ValidationError.
            raise MastodonInputError(f"Validation failed: {exc.message}") from None

    async def log_in(self, login: Any, password: Any, address: str | None) -> int:
        """The user id whose handle or email is ``login`` and whose password matches;
        None (as ``InvalidInput``) otherwise. Refused (429) while failures pile up."""
        if not isinstance(login, str) or not login or len(login) > 320 or not isinstance(password, str):
            raise InvalidInput("username and password are required")
        found = await self.hf.store.login_of(login)
        account = f"user:{found[0]}" if found else "name:" + login.lower()
        self.guard.check(account, address)
        ok = await check_password(found[1] if found else None, password[:MAX_PASSWORD])
        if not ok or found is None:
            await self.guard.failed(account, address)
            raise InvalidInput("Invalid username/email or password")
        return found[0]

    async def set_password(self, user_id: int, password: str, email: str | None = None) -> None:
        """An operator's or the demo's way to give an existing user (e.g. one made by
        ``/v1/users``) a password."""
        validate_password(password)
        if email is not None:
            validate_email(email)
        await self.hf.store.set_password(user_id, await hash_password(password), email)

    async def update_profile(self, user_id: int, display_name: Any, note: Any) -> User:
        if display_name is not None:
            try:
                validate_display_name(display_name, "")
            except InvalidInput as exc:
                raise MastodonInputError(exc.message) from None
        if note is not None:
            if not isinstance(note, str) or len(note) > MAX_NOTE:
                raise MastodonInputError(f"Validation failed: Note is too long (maximum is {MAX_NOTE} characters)")
        user = await self.hf.store.update_profile(user_id, display_name, note)
        if user is None:
            raise Forbidden("the token's user no longer exists")
        return user

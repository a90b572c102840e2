"""Secrets at rest: AES-256-GCM under ``QCPULSE_SECRET_KEY``, with key rotation.

What is sealed here must be read back (a webhook secret signs every delivery), so it
is encrypted, not hashed; API keys are only ever compared, so they stay SHA-256
hashes (``shared.auth``).

Stored form, one ASCII string::

    qcenc:v1:<key id>:<base64url(nonce ‖ ciphertext ‖ tag)>

* ``v1`` is the format: AES-256-GCM, a random 96-bit nonce per value, the 128-bit tag.
* The key id is the first 8 hex digits of SHA-256 over ``"qcpulse-key-id:" ‖ key``:
  it names the key without revealing it, so a row says which key opens it.
* The associated data is ``qcenc:v1:<key id>:<context>``, where the context names the
  row (``alert_subscriptions.secret:<subscription id>``): a ciphertext copied into
  another row, or a header edited to another key id, fails to open.

Keys: ``QCPULSE_SECRET_KEY`` is 32 random bytes, base64url (``qcpulse secret-key``
prints one). ``QCPULSE_SECRET_KEY_PREVIOUS`` is a comma-separated list of older keys
that still open rows; ``qcpulse rotate-secrets`` re-seals every row with the current
one. Without a key the box uses a fixed *development* key (key id ``dev``), which
protects nothing: ``qcpulse serve`` refuses to start so unless told
``--insecure-dev-key`` (or ``QCPULSE_INSECURE_DEV_KEY=true``); the demo and the tests
use it. The development key always opens rows (a row under it is as good as clear),
and clear values (rows written before migration 0009) are read as they are.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
from collections.abc import Sequence
from functools import lru_cache
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

if TYPE_CHECKING:
    from shared.settings import Settings

PREFIX = "qcenc"
VERSION = "v1"
DEV_KEY_ID = "dev"
#: Public by design: the key used when none is configured (demo, tests).
_DEV_KEY = hashlib.sha256(b"qcpulse development key: not a secret").digest()
_NONCE_BYTES = 12

MISSING_KEY_MESSAGE = (
    "QCPULSE_SECRET_KEY is not set. Webhook secrets are stored encrypted with it; "
    "generate one with `qcpulse secret-key` and keep it with your other secrets "
    "(losing it means re-creating every subscription). For a throwaway development "
    "server, pass `--insecure-dev-key` (or set QCPULSE_INSECURE_DEV_KEY=true)."
)


class SecretKeyError(ValueError):
    """A key is missing or malformed, or a stored value cannot be opened."""


def new_key() -> str:
    """A fresh ``QCPULSE_SECRET_KEY``: 32 random bytes, base64url without padding."""
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")


def parse_key(text: str) -> bytes:
    text = text.strip()
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 32:
        raise SecretKeyError(
            "a secret key must be 32 random bytes, base64url-encoded "
            "(`qcpulse secret-key` prints one)"
        )
    return raw


def key_id(key: bytes) -> str:
    if key == _DEV_KEY:
        return DEV_KEY_ID
    return hashlib.sha256(b"qcpulse-key-id:" + key).hexdigest()[:8]


def is_sealed(stored: str) -> bool:
    return stored.startswith(f"{PREFIX}:")


def key_id_of(stored: str) -> str | None:
    """The key id a stored value was sealed with; None for a clear value."""
    if not is_sealed(stored):
        return None
    parts = stored.split(":", 3)
    return parts[2] if len(parts) == 4 else None


class SecretBox:
    """Seals with the current key; opens with the current, previous or development key."""

    def __init__(self, current: bytes, previous: Sequence[bytes] = ()) -> None:
        self.current_id = key_id(current)
        self._current = AESGCM(current)
        self._keys = {key_id(k): AESGCM(k) for k in (*previous, _DEV_KEY)}
        self._keys[self.current_id] = self._current

    @property
    def is_dev(self) -> bool:
        """Sealing with the public development key: encryption in form only."""
        return self.current_id == DEV_KEY_ID

    @staticmethod
    def _aad(kid: str, context: str) -> bytes:
        return f"{PREFIX}:{VERSION}:{kid}:{context}".encode()

    def seal(self, plaintext: str, context: str) -> str:
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._current.encrypt(
            nonce, plaintext.encode(), self._aad(self.current_id, context)
        )
        body = base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")
        return f"{PREFIX}:{VERSION}:{self.current_id}:{body}"

    def open(self, stored: str, context: str) -> str:
        """The clear value. A value stored before encryption is returned as it is."""
        if not is_sealed(stored):
            return stored
        parts = stored.split(":", 3)
        if len(parts) != 4 or parts[1] != VERSION:
            raise SecretKeyError(f"unknown sealed-secret format {':'.join(parts[:2])!r}")
        _, _, kid, body = parts
        aead = self._keys.get(kid)
        if aead is None:
            raise SecretKeyError(
                f"sealed with key id {kid}, which is neither QCPULSE_SECRET_KEY nor in "
                "QCPULSE_SECRET_KEY_PREVIOUS"
            )
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            plain = aead.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], self._aad(kid, context))
        except (InvalidTag, binascii.Error, ValueError) as exc:
            raise SecretKeyError(f"sealed value under key id {kid} does not open") from exc
        return plain.decode()

    def is_current(self, stored: str) -> bool:
        return key_id_of(stored) == self.current_id

    def truly_sealed(self, stored: str) -> bool:
        """Sealed with a real key (not clear, not under the development key)."""
        kid = key_id_of(stored)
        return kid is not None and kid != DEV_KEY_ID


@lru_cache(maxsize=8)
def _box(current: str | None, previous: str | None) -> SecretBox:
    older = [parse_key(k) for k in (previous or "").split(",") if k.strip()]
    return SecretBox(parse_key(current) if current else _DEV_KEY, older)


def secret_box(settings: Settings) -> SecretBox:
    """The box for these settings (built once per key set)."""
    current = settings.secret_key.get_secret_value() if settings.secret_key else None
    previous = (
        settings.secret_key_previous.get_secret_value() if settings.secret_key_previous else None
    )
    return _box(current or None, previous or None)


def require_secret_key(settings: Settings) -> None:
    """Raise unless a real key is configured or the development key is explicitly allowed."""
    if not settings.secret_key and not settings.insecure_dev_key:
        raise SecretKeyError(MISSING_KEY_MESSAGE)

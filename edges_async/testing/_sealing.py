"""Sealed opaque tokens: a fixed-size payload and a keyed hash, in URL-safe base64.

The simulator's output and live cursors are both made this way, so a client
cannot forge or edit one: :meth:`Sealer.open` refuses anything it did not seal.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

__all__ = ["Sealer"]

_SEAL_SIZE = 8


class Sealer:
    """Seals payloads into tokens, and opens tokens back into payloads of a known size."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes, *, person: bytes = b"") -> None:
        self._key = hashlib.blake2b(key, digest_size=32, person=person).digest()

    def _seal(self, payload: bytes) -> bytes:
        return hashlib.blake2b(payload, key=self._key, digest_size=_SEAL_SIZE).digest()

    def seal(self, payload: bytes) -> str:
        """``payload`` and its seal as unpadded URL-safe base64."""
        raw = payload + self._seal(payload)
        return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")

    def open(self, token: str, size: int) -> bytes:
        """The ``size``-byte payload ``token`` seals; ``ValueError`` if it is not one of ours."""
        try:
            padded = (token + "=" * (-len(token) % 4)).encode("ascii")
            raw = base64.b64decode(padded, altchars=b"-_", validate=True)
        except (binascii.Error, UnicodeEncodeError) as exc:
            raise ValueError("cursor is not valid") from exc
        if len(raw) != size + _SEAL_SIZE:
            raise ValueError("cursor is not valid")
        payload, seal = raw[:size], raw[size:]
        if not hmac.compare_digest(seal, self._seal(payload)):
            raise ValueError("cursor is not valid")
        return payload

    def __repr__(self) -> str:
        return "Sealer(<key>)"

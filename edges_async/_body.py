"""Reading a response body within a size cap, decoded, never more than the cap in memory.

httpx decodes each compressed chunk whole: one 64 KiB chunk of a gzip bomb
becomes 64 MB before anyone can count it, and an in-process transport hands
over the body as a single chunk. So the client asks only for the encodings
decoded here (``Accept-Encoding: gzip, deflate``), reads the raw stream, and
decodes each chunk with zlib's ``max_length``: the output never exceeds the
room left under the cap by more than a byte, which is how an oversized body
is told apart from one that fits exactly.
"""

from __future__ import annotations

import zlib
from typing import final

__all__ = ["ACCEPT_ENCODING", "BodyDecoder", "BodyTooLarge", "UndecodableBody"]

ACCEPT_ENCODING = "gzip, deflate"


class BodyTooLarge(Exception):
    """The decoded body exceeds the cap."""


class UndecodableBody(Exception):
    """The body is corrupt, or in an encoding the client did not ask for."""


@final
class BodyDecoder:
    """Decodes a body's raw chunks as they come, refusing to go past ``limit`` bytes."""

    __slots__ = ("_chunks", "_decoder", "_encoding", "_head", "_limit", "_size")

    def __init__(self, content_encoding: str | None, limit: int) -> None:
        codings = [
            coding.strip().lower()
            for coding in (content_encoding or "").split(",")
            if coding.strip().lower() not in ("", "identity")
        ]
        if len(codings) > 1 or (codings and codings[0] not in ("gzip", "x-gzip", "deflate")):
            raise UndecodableBody(
                f"unsupported Content-Encoding {content_encoding!r} (asked for {ACCEPT_ENCODING})"
            )
        self._encoding = codings[0] if codings else None
        self._decoder: zlib._Decompress | None = None
        if self._encoding in ("gzip", "x-gzip"):
            self._decoder = zlib.decompressobj(zlib.MAX_WBITS | 16)
        self._limit = limit
        self._head = b""  # deflate: the first bytes, until there are two to tell the framing
        self._size = 0
        self._chunks: list[bytes] = []

    def feed(self, raw: bytes) -> None:
        """Decode one raw chunk; ``BodyTooLarge`` past the limit, ``UndecodableBody`` if corrupt."""
        if self._encoding is None:
            self._keep(raw)
            return
        if self._decoder is None:
            # deflate: zlib-wrapped as the RFC says, or raw as some send. The
            # two-byte zlib header tells, so a body streamed in an empty or a
            # one-byte first chunk waits for the second byte.
            raw = self._head + raw
            if len(raw) < 2:
                self._head = raw
                return
            self._head = b""
            self._decoder = zlib.decompressobj(
                zlib.MAX_WBITS if _zlib_header(raw) else -zlib.MAX_WBITS
            )
        try:
            self._keep(self._decoder.decompress(raw, self._limit - self._size + 1))
        except zlib.error as exc:
            raise UndecodableBody(f"corrupt {self._encoding} body: {exc}") from None
        if self._decoder.unconsumed_tail:
            raise BodyTooLarge

    def _keep(self, data: bytes) -> None:
        self._size += len(data)
        if self._size > self._limit:
            raise BodyTooLarge
        if data:
            self._chunks.append(data)

    def finish(self) -> bytes:
        """The whole decoded body, once every raw chunk was fed."""
        try:
            if self._decoder is None and self._head:  # a deflate body of a single byte
                self._decoder = zlib.decompressobj(-zlib.MAX_WBITS)
                self._keep(self._decoder.decompress(self._head, self._limit + 1))
            if self._decoder is not None:
                self._keep(self._decoder.flush())
        except zlib.error as exc:
            raise UndecodableBody(f"corrupt {self._encoding} body: {exc}") from None
        return b"".join(self._chunks)


def _zlib_header(raw: bytes) -> bool:
    """Whether ``raw`` starts with a zlib header (RFC 1950: deflate method, check bits)."""
    return (raw[0] & 0x0F) == 8 and int.from_bytes(raw[:2], "big") % 31 == 0

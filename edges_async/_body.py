"""Reading a response body within a size cap, decoded, never more than the cap in memory.

httpx decodes each compressed chunk whole: one 64 KiB chunk of a gzip bomb
becomes 64 MB before anyone can count it, and an in-process transport hands
over the body as a single chunk. So the client asks only for the encodings
decoded here (``Accept-Encoding: gzip, deflate``) and puts a
:class:`DecodedStream` in place of the response's stream: each raw chunk is
decoded with zlib's ``max_length``, so the output never exceeds the room left
under the cap by more than a byte, which is how an oversized body is told
apart from one that fits exactly. httpx then reads the decoded body as it
would any other.
"""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator
from typing import final

import httpx

__all__ = [
    "ACCEPT_ENCODING",
    "BodyDecoder",
    "BodyTooLarge",
    "DecodedStream",
    "UndecodableBody",
]

ACCEPT_ENCODING = "gzip, deflate"


class BodyTooLarge(Exception):
    """The decoded body exceeds the cap."""


class UndecodableBody(Exception):
    """The body is corrupt, or in an encoding the client did not ask for."""


@final
class BodyDecoder:
    """Decodes a body's raw chunks as they come, refusing to go past ``limit`` bytes in all."""

    __slots__ = ("_decoder", "_encoding", "_head", "_limit", "_size")

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

    def decode(self, raw: bytes) -> bytes:
        """A raw chunk decoded: ``BodyTooLarge`` past the limit, ``UndecodableBody`` if corrupt."""
        if self._encoding is None:
            return self._counted(raw)
        if self._decoder is None:
            # deflate: zlib-wrapped as the RFC says, or raw as some send. The
            # two-byte zlib header tells, so a body streamed in an empty or a
            # one-byte first chunk waits for the second byte.
            raw = self._head + raw
            if len(raw) < 2:
                self._head = raw
                return b""
            self._head = b""
            self._decoder = zlib.decompressobj(
                zlib.MAX_WBITS if _zlib_header(raw) else -zlib.MAX_WBITS
            )
        try:
            data = self._decoder.decompress(raw, self._limit - self._size + 1)
        except zlib.error as exc:
            raise UndecodableBody(f"corrupt {self._encoding} body: {exc}") from None
        if self._decoder.unconsumed_tail:
            raise BodyTooLarge
        return self._counted(data)

    def flush(self) -> bytes:
        """What the decoder still holds, once every raw chunk was decoded."""
        try:
            if self._decoder is None and self._head:  # a deflate body of a single byte
                self._decoder = zlib.decompressobj(-zlib.MAX_WBITS)
                return self._counted(self._decoder.decompress(self._head, self._limit + 1))
            if self._decoder is not None:
                return self._counted(self._decoder.flush())
        except zlib.error as exc:
            raise UndecodableBody(f"corrupt {self._encoding} body: {exc}") from None
        return b""

    def _counted(self, data: bytes) -> bytes:
        self._size += len(data)
        if self._size > self._limit:
            raise BodyTooLarge
        return data


@final
class DecodedStream(httpx.AsyncByteStream):
    """A response's raw stream, decoded by a :class:`BodyDecoder` as it is read."""

    __slots__ = ("_decoder", "_raw")

    def __init__(self, raw: httpx.AsyncByteStream, decoder: BodyDecoder) -> None:
        self._raw = raw
        self._decoder = decoder

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._raw:
            data = self._decoder.decode(chunk)
            if data:
                yield data
        data = self._decoder.flush()
        if data:
            yield data

    async def aclose(self) -> None:
        """Close the raw stream."""
        await self._raw.aclose()


def _zlib_header(raw: bytes) -> bool:
    """Whether ``raw`` starts with a zlib header (RFC 1950: deflate method, check bits)."""
    return (raw[0] & 0x0F) == 8 and int.from_bytes(raw[:2], "big") % 31 == 0

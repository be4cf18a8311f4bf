"""Keeping secrets out of everything a user or a log line can see.

The secrets are the API key and the values of a launch's callback headers
(they carry the shared secret a callback receiver checks). A hostile or buggy
server can echo them back anywhere: in an error body, in a header, in a
redirect's ``Location``. So nothing derived from a response or an httpx
exception reaches an exception, a log line or a ``repr`` without passing
through a :class:`Redactor` first:

- :meth:`Redactor.request` copies a request with its secrets replaced and
  without its body;
- :meth:`Redactor.response` copies a response with its headers and body
  scrubbed, its request redacted and no ``next_request`` (httpx builds one with
  our headers for every 3xx);
- :meth:`Redactor.text` scrubs a message.

Log lines are written by libraries too: httpcore logs response headers at
DEBUG. Every secret is registered with :func:`protect` as soon as a client
holds it, and :func:`scrub_logs` puts a filter on the loggers of edges_async,
httpx and httpcore that scrubs them from each record those loggers emit. The
module-level helpers (:func:`scrub`, :func:`safe_request`,
:func:`safe_response`) scrub every secret of the process.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import urllib.parse
from collections.abc import Iterable
from typing import Any, final

import httpx
import pydantic_core

from ._memory import remember

__all__ = [
    "REDACTED",
    "Redactor",
    "protect",
    "safe_request",
    "safe_response",
    "scrub",
    "scrub_json",
    "scrub_logs",
]

REDACTED = "[redacted]"
# Shorter values are not scrubbed: replacing "on" or "json" everywhere would
# mangle every message, and a secret that short protects nothing anyway.
_MIN_SECRET_LENGTH = 8
_MAX_CALLBACK_SECRETS = 10_000
# Headers describing the wire form of a body; a scrubbed copy holds the decoded body.
_WIRE_HEADERS = ("content-encoding", "content-length", "transfer-encoding")
# Every logger that may write a header or a body: ours, httpx's and httpcore's.
_LOGGERS = (
    "edges_async",
    "httpx",
    "httpcore",
    "httpcore.connection",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
    "httpcore.socks",
)


def _forms(secret: str) -> list[str]:
    """The ways a secret may be written back: as is, JSON-escaped, percent-encoded.

    Percent-encoded both ways: ``%20`` for a space, and ``+`` as in a query
    string (httpx writes query values so).
    """
    forms = {
        secret,
        json.dumps(secret)[1:-1],
        urllib.parse.quote(secret, safe=""),
        urllib.parse.quote_plus(secret, safe=""),
    }
    return sorted(forms, key=len, reverse=True)


@final
class Redactor:
    """Scrubs a set of secrets from text, headers, requests and responses.

    Matching ignores case: a server may echo a secret upper-cased, or inside
    a host name, which URL parsing lower-cases.
    """

    __slots__ = ("_forms", "_lowered", "_patterns")

    def __init__(self, secrets: Iterable[str]) -> None:
        forms: set[str] = set()
        for secret in secrets:
            if isinstance(secret, str) and len(secret) >= _MIN_SECRET_LENGTH:
                forms.update(_forms(secret))
        self._forms = sorted(forms, key=len, reverse=True)
        # Detection is a plain substring search of the lower-cased text, one per
        # form (fast even for thousands of them); the case-blind pattern only
        # runs for a form found there.
        self._lowered = [form.lower() for form in self._forms]
        self._patterns: dict[str, tuple[re.Pattern[str], re.Pattern[bytes]]] = {}

    def _pattern(self, form: str) -> tuple[re.Pattern[str], re.Pattern[bytes]]:
        pattern = self._patterns.get(form)
        if pattern is None:
            pattern = self._patterns[form] = (
                re.compile(re.escape(form), re.IGNORECASE),
                re.compile(re.escape(form.encode()), re.IGNORECASE),
            )
        return pattern

    def text(self, text: str) -> str:
        """``text`` with every secret, in any case, replaced by ``[redacted]``."""
        if not self._forms:
            return text
        lowered = text.lower()
        for form, low in zip(self._forms, self._lowered, strict=True):
            if low in lowered:
                text = self._pattern(form)[0].sub(REDACTED, text)
        return text

    def content(self, content: bytes) -> bytes:
        """``content`` with every secret, in any case, replaced by ``[redacted]``.

        A JSON body may also spell a secret with escapes (``\\u0073``,
        ``\\/``): a body with a backslash is decoded, scrubbed and encoded
        again when that hides one. A body too deeply nested to decode is kept
        as scrubbed so far.
        """
        if not self._forms:
            return content
        lowered = content.lower()
        for form, low in zip(self._forms, self._lowered, strict=True):
            if low.encode() in lowered:
                content = self._pattern(form)[1].sub(REDACTED.encode(), content)
        if b"\\" in content:
            try:
                decoded = pydantic_core.from_json(content)
            except ValueError:  # not JSON, or nested past the parser's depth limit
                return content
            scrubbed = self.json(decoded)
            if scrubbed != decoded:
                content = json.dumps(scrubbed).encode()
        return content

    def json(self, value: Any) -> Any:
        """A decoded JSON value with every secret replaced in its strings (keys included)."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list):
            return [self.json(item) for item in value]
        if isinstance(value, dict):
            return {self.text(str(key)): self.json(item) for key, item in value.items()}
        return value

    def headers(self, headers: httpx.Headers, *, drop: Iterable[str] = ()) -> httpx.Headers:
        """A copy of ``headers``: the API key header and every secret replaced."""
        dropped = {name.lower() for name in drop}
        return httpx.Headers(
            [
                (name, REDACTED if name.lower() == "x-api-key" else self.text(value))
                for name, value in headers.multi_items()
                if name.lower() not in dropped
            ]
        )

    def url(self, url: httpx.URL) -> httpx.URL:
        """``url`` with every secret replaced (a server may echo one into a link)."""
        text = str(url)
        scrubbed = self.text(text)
        if scrubbed == text:
            return url
        try:
            return httpx.URL(scrubbed)
        except httpx.InvalidURL:
            return httpx.URL("about:redacted")

    def request(self, request: httpx.Request) -> httpx.Request:
        """A copy of ``request`` safe to hand to users: secrets replaced, no body."""
        return httpx.Request(
            request.method,
            self.url(request.url),
            headers=self.headers(request.headers, drop=_WIRE_HEADERS),
        )

    def response(self, response: httpx.Response, *, request: httpx.Request) -> httpx.Response:
        """A copy of a read ``response`` safe to hand to users.

        Headers and body are scrubbed, the request is the redacted ``request``,
        and there is no ``next_request``. The body is the decoded one, so the
        copy carries no ``Content-Encoding``.
        """
        extensions: dict[str, Any] = {}
        if "http_version" in response.extensions:
            extensions["http_version"] = response.extensions["http_version"]
        reason = response.extensions.get("reason_phrase")
        if isinstance(reason, bytes):  # the status line is the server's to write too
            extensions["reason_phrase"] = self.text(reason.decode("latin-1")).encode("latin-1")
        return httpx.Response(
            response.status_code,
            headers=self.headers(response.headers, drop=_WIRE_HEADERS),
            content=self.content(response.content),
            request=self.request(request),
            extensions=extensions,
        )


# -- the process's secrets -------------------------------------------------------------
#
# One registry for the whole process, not one per client: a message is scrubbed
# of every secret any client of the process holds, which costs nothing and
# cannot miss one, and log filters (which are per logger, hence per process)
# need it anyway. API keys are few and all kept; callback header values may be
# many (one per launch if a user wishes), so the newest are kept.

_api_keys: dict[str, None] = {}
_callback_secrets: dict[str, None] = {}
_lock = threading.Lock()
_current = Redactor(())


def protect(secret: str, *, api_key: bool = False) -> None:
    """Scrub ``secret`` from every error, ``repr`` and log record from now on."""
    global _current
    if not isinstance(secret, str) or len(secret) < _MIN_SECRET_LENGTH:
        return
    with _lock:
        if secret in _api_keys or secret in _callback_secrets:
            return
        if api_key:
            _api_keys[secret] = None
        else:
            remember(_callback_secrets, secret, None, limit=_MAX_CALLBACK_SECRETS)
        _current = Redactor([*_api_keys, *_callback_secrets])
    scrub_logs()


def scrub(text: str) -> str:
    """``text`` with every protected secret replaced by ``[redacted]``."""
    return _current.text(text)


def scrub_json(value: Any) -> Any:
    """A decoded JSON value with every protected secret replaced in its strings."""
    return _current.json(value)


def safe_request(request: httpx.Request) -> httpx.Request:
    """A copy of ``request`` fit for an exception: secrets replaced, no body."""
    return _current.request(request)


def safe_response(response: httpx.Response) -> httpx.Response:
    """A copy of a read ``response`` fit for an exception (see :meth:`Redactor.response`)."""
    return _current.response(response, request=response.request)


@final
class _ScrubSecrets(logging.Filter):
    """Rewrites a record's message with every protected secret replaced."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        scrubbed = _current.text(message)
        if scrubbed != message:
            record.msg, record.args = scrubbed, None
        return True


_FILTER = _ScrubSecrets()


def scrub_logs() -> None:
    """Put the secret-scrubbing filter on every logger that may write a secret (once each)."""
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)

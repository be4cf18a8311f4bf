"""``EDGES_LOG``: the SDK's log lines on stderr without writing any logging setup.

Everything the SDK logs goes to the ``edges_async`` logger (the secret-scrubbing
filter of ``._redaction`` sits on it). An application that configures logging
sees those records like any other library's; one that does not can set
``EDGES_LOG=debug`` (every HTTP attempt) or ``EDGES_LOG=info`` to get them on
stderr.

The variable is read when the first ``AsyncClient`` is built, not at import:
applications often import the SDK before they configure logging, and a handler
added at import would then print every line twice. It acts once per process,
and only where the application configured nothing (no handler on the
``edges_async`` logger nor on the root logger): it never adds to an
application's own setup.

Like ``OPENAI_LOG`` in openai-python, any other value (``EDGES_LOG=verbose``,
a typo) is ignored, without an error nor a warning: a variable meant for a
quick look must never stop a service from starting, and a warning printed to
stderr would be the very output the application did not ask for. The two
values are read case-insensitively.
"""

from __future__ import annotations

import logging
import os
import threading

import httpx

from ._redaction import scrub

__all__ = ["ENV_VARIABLE", "log_attempt", "log_from_environment"]

ENV_VARIABLE = "EDGES_LOG"
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO}
_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_logger = logging.getLogger("edges_async")
_lock = threading.Lock()
_done = False


def log_from_environment() -> None:
    """Honour ``EDGES_LOG`` once per process (see the module's docstring).

    The first call decides; later ones return at once, reading the flag
    without taking the lock.
    """
    global _done
    if _done:
        return
    with _lock:
        if _done:
            return
        _done = True
        level = _LEVELS.get(os.environ.get(ENV_VARIABLE, "").strip().lower())
        logger = logging.getLogger("edges_async")
        if level is None or logger.handlers or logging.getLogger().handlers:
            return
        handler = logging.StreamHandler()  # sys.stderr, looked up at each write
        handler.setLevel(level)
        handler.setFormatter(logging.Formatter(_FORMAT))
        logger.addHandler(handler)
        logger.setLevel(level)


def log_attempt(
    request: httpx.Request,
    result: int | str,
    queued: float,
    started: float,
    ended: float,
    retry: int,
    max_retries: int,
) -> None:
    """Log one HTTP attempt at DEBUG: method, path and query, status or failure, timings.

    ``queued``, ``started`` and ``ended`` are loop times: when the attempt
    asked the rate limiter, when the limiter let it go, when it ended.
    """
    _logger.debug(
        "%s %s -> %s in %.1f ms (rate limiter wait %.1f ms, attempt %d of %d)",
        request.method,
        scrub(request.url.raw_path.decode("ascii", "replace")),
        result,
        (ended - started) * 1000,
        (started - queued) * 1000,
        retry + 1,
        max_retries + 1,
    )

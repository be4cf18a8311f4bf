"""Reading responses: a body as JSON or a model, and the typed errors built from a response.

Every error built here carries a redacted copy of the response (and of its
request), and its message is scrubbed of every secret before any cut, so no
part of a secret shows even when a server echoes it.
"""

from __future__ import annotations

from typing import Any, TypeVar

import httpx
import pydantic
import pydantic_core

from ._exceptions import APIResponseValidationError, APIStatusError, status_error_class
from ._models import ErrorBody
from ._redaction import safe_response, scrub, scrub_json

__all__ = ["decode_json", "invalid_response", "parse_model", "parse_models", "status_error"]

_BODY_SNIPPET = 200
# Read past the snippet's end before scrubbing: a secret the cut would split is whole there.
_SNIPPET_MARGIN = 4096
_SHOWN_INPUT = 80
ModelT = TypeVar("ModelT", bound=pydantic.BaseModel)


def _snippet(content: bytes) -> str:
    """The start of a body, scrubbed before it is cut (so no part of a secret shows)."""
    text = scrub(content[: _BODY_SNIPPET + _SNIPPET_MARGIN].decode("utf-8", errors="replace"))
    return text[:_BODY_SNIPPET] + ("..." if len(text) > _BODY_SNIPPET else "")


def _shown(value: Any) -> str:
    """A value a body held, for a message: scrubbed, then cut to a readable length."""
    text = scrub(repr(scrub_json(value)))
    return text if len(text) <= _SHOWN_INPUT else text[: _SHOWN_INPUT - 3] + "..."


def _describe(exc: Exception) -> str:
    """An exception for a message; a validation error's inputs scrubbed before they are cut.

    pydantic cuts long inputs in the middle of its own message, which could
    leave a part of a secret that no scrubbing recognizes.
    """
    if not isinstance(exc, pydantic.ValidationError):
        return str(exc)
    lines = [f"{exc.error_count()} validation error(s) for {exc.title}"]
    for error in exc.errors(include_url=False, include_context=False):
        where = ".".join(str(part) for part in error["loc"]) or "(body)"
        lines.append(f"{where}: {error['msg']} [input {_shown(error.get('input'))}]")
    return "\n".join(lines)


def status_error(response: httpx.Response) -> APIStatusError:
    """The ``APIStatusError`` subclass for an error response, with the API's error body if any."""
    safe = safe_response(response)
    request = safe.request
    error_class = status_error_class(safe.status_code)
    head = f"{safe.status_code} {safe.reason_phrase} from {request.method} {request.url}"
    if safe.is_redirect:
        target = safe.headers.get("location", "?")
        return error_class(
            scrub(
                f"{head}: redirect to {target!r} not followed "
                "(only the base URL's origin is trusted)"
            ),
            response=safe,
            body=None,
        )
    try:
        # pydantic-core's parser: a body nested past its depth limit is a ValueError,
        # where json.loads would raise RecursionError.
        body = ErrorBody.model_validate(scrub_json(pydantic_core.from_json(safe.content)))
    except (ValueError, TypeError):
        return error_class(
            scrub(
                f"{head}: the response body is not an Edges error (not JSON): "
                f"{_snippet(safe.content)!r}"
            ),
            response=safe,
            body=None,
        )
    label = f"{body.error_label}: " if body.error_label else ""
    ref = f" (error_ref {body.error_ref})" if body.error_ref else ""
    return error_class(scrub(f"{head}: {label}{body.message or ''}{ref}"), response=safe, body=body)


def decode_json(response: httpx.Response) -> Any:
    """The JSON body of a successful response, or ``APIResponseValidationError``.

    pydantic-core's parser (already a dependency) reads bodies about 1.6x as
    fast as ``json``; object keys are interned, as every run repeats them.
    """
    try:
        return pydantic_core.from_json(response.content, cache_strings="keys")
    except ValueError:
        pass
    raise invalid_response(response, f"the body is not valid JSON ({_snippet(response.content)!r})")


def invalid_response(
    response: httpx.Response, what: str, exc: Exception | None = None
) -> APIResponseValidationError:
    """An ``APIResponseValidationError`` for a body that is not what was expected.

    Its message (``what`` and ``exc`` included) and the response it carries are
    scrubbed of every secret.
    """
    safe = safe_response(response)
    request = safe.request
    return APIResponseValidationError(
        scrub(
            f"{safe.status_code} from {request.method} {request.url}: {what}"
            + (f": {_describe(exc)}" if exc is not None else "")
        ),
        response=safe,
    )


def parse_model(model: type[ModelT], response: httpx.Response) -> ModelT:
    """The response's JSON body as ``model``, or ``APIResponseValidationError``."""
    data = decode_json(response)
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        error = invalid_response(response, f"unexpected {model.__name__} shape", exc)
    raise error


def parse_models(model: type[ModelT], response: httpx.Response) -> list[ModelT]:
    """The response's JSON array as a list of ``model``, or ``APIResponseValidationError``."""
    data = decode_json(response)
    if not isinstance(data, list):
        raise invalid_response(response, "expected a JSON array", TypeError(type(data).__name__))
    try:
        return [model.model_validate(item) for item in data]
    except pydantic.ValidationError as exc:
        error = invalid_response(response, f"unexpected {model.__name__} shape", exc)
    raise error

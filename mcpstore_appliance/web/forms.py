"""Reading forms: URL-encoded and multipart bodies, their text checked, malformed ones refused as a client's error.

aiohttp's multipart reader raises ValueError, AssertionError, RuntimeError and others for a missing boundary or
a body that does not follow it; all of them are the client's doing, so they become one 400 here instead of a
500. The publish form is read streamed (its last part is the bundle); the small page forms are read whole.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Collection
from typing import TypeVar

from aiohttp import BodyPartReader, MultipartReader, web
from aiohttp.http_exceptions import HttpProcessingError
from multidict import MultiDictProxy

from ..catalog.publish_options import OPTION_NAMES
from ..catalog.uploads import BLOCK_SIZE
from ..errors import InvalidInput, UnsupportedMediaType
from ..text import check_text
from .auth import check_csrf_value
from .keys import CSRF_PENDING

MAX_FIELD_BYTES = 64 * 1024
# What aiohttp's multipart reader raises for a body that does not follow its boundary or headers.
MALFORMED = (ValueError, AssertionError, RuntimeError, TypeError, KeyError, LookupError, HttpProcessingError)
T = TypeVar("T")


def malformed(detail: object = None) -> InvalidInput:
    return InvalidInput("the multipart/form-data body is malformed" + (f": {str(detail)[:120]}" if detail else ""),
                        code="malformed_multipart")


async def guarded(step: Awaitable[T]) -> T:
    """One read of a multipart body; its parsing errors are the client's (400 malformed_multipart)."""
    try:
        return await step
    except InvalidInput:
        raise
    except MALFORMED as exc:
        raise malformed(exc) from None


async def read_form(request: web.Request, *, multiline: Collection[str] = ()) -> MultiDictProxy:
    """A page's form (URL-encoded or multipart), every field name and value checked as text: one line unless
    named in `multiline` (a textarea)."""
    if request.content_type.startswith("multipart/"):
        open_multipart(request)  # the same refusals as the streamed form
    form = await guarded(request.post())
    if CSRF_PENDING in request:  # a multipart form: web/auth.py leaves its csrf_token field to the reader
        check_csrf_value(request, str(form.get("csrf_token", "")))
    for name, value in form.items():
        check_text(name, "a form field name")
        if isinstance(value, str):
            check_text(value, name, multiline=name in multiline)
    return form


def open_multipart(request: web.Request) -> None:
    """Refuse what aiohttp's reader cannot read as a form: another multipart type, or no boundary."""
    if request.content_type != "multipart/form-data":
        raise UnsupportedMediaType(f"{request.content_type[:60]} is not a form: send multipart/form-data")
    if "boundary=" not in request.headers.get("Content-Type", "").lower():
        raise malformed("Content-Type has no boundary")


async def _read_field(part: BodyPartReader) -> str:
    data = bytearray()
    while chunk := await guarded(part.read_chunk(16 * 1024)):
        data += chunk
        if len(data) > MAX_FIELD_BYTES:
            raise InvalidInput(f"form field {part.name!r} is too long", code="option_too_long",
                               details={"field": part.name})
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput(f"form field {part.name!r} is not UTF-8", code="invalid_unicode",
                           details={"field": part.name}) from None


async def read_publish_form(request: web.Request, options: dict[str, str]) -> AsyncIterator[bytes]:
    """Read the option fields into `options`; return the chunks of the file part (which must be last)."""
    open_multipart(request)
    reader: MultipartReader = await guarded(request.multipart())
    csrf = ""
    while True:
        part = await guarded(reader.next())
        if part is None:
            raise InvalidInput("the form has no 'file' part with the bundle", code="missing_file")
        if not isinstance(part, BodyPartReader):
            raise malformed("a nested multipart part")
        name = check_text(part.name or "", "a form field name")
        if name == "file" or part.filename:
            break
        if name == "csrf_token":
            csrf = await _read_field(part)
        elif name in OPTION_NAMES:
            if name in options:
                raise InvalidInput(f"option {name!r} given twice", code="duplicate_option", details={"field": name})
            options[name] = await _read_field(part)  # PublishOptions.parse checks the text
        else:
            raise InvalidInput(f"unknown form field {name[:50]!r}", code="unknown_option",
                               details={"options": [name[:50]]})
    check_csrf_value(request, csrf)  # cookie sessions: the token must come before the file

    async def chunks() -> AsyncIterator[bytes]:
        while chunk := await guarded(part.read_chunk(BLOCK_SIZE)):
            yield chunk
        if await guarded(reader.next()) is not None:
            raise InvalidInput("the 'file' part must be the last part of the form", code="file_not_last")

    return chunks()

"""Read a multipart upload (or a raw audio body) with the size limit enforced while reading.

Why not `request.form()`: it would spool any size to disk before we could refuse it; here a body
over the limit is cut off at the limit with 413, and a declared Content-Length over it is refused
before reading anything.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass, field

from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request

from cozy_core.errors import CozyError

FORM_OVERHEAD = 256 * 1024  # other fields and multipart framing
_RAW_TYPES = ("audio/", "application/octet-stream", "video/")


@dataclass
class Upload:
    data: bytes
    filename: str | None
    fields: dict[str, str] = field(default_factory=dict)
    lists: dict[str, list[str]] = field(default_factory=dict)  # repeated fields such as include[]


def _too_large(limit: int) -> CozyError:
    return CozyError(
        f"file is larger than the {limit / (1024 * 1024):.0f} MB limit",
        code="VALIDATION_FILE_TOO_LARGE",
        status=413,
        param="file",
    )


async def read_upload(request: Request, max_bytes: int, *, allow_raw: bool = False) -> Upload:
    """The `file` part and the text fields; raw audio bodies too when `allow_raw`."""
    ctype = request.headers.get("content-type", "").lower()
    budget = max_bytes + FORM_OVERHEAD
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > budget:
        raise _too_large(max_bytes)

    async def limited(limit: int) -> AsyncGenerator[bytes, None]:
        seen = 0
        async for chunk in request.stream():
            seen += len(chunk)
            if seen > limit:
                raise _too_large(max_bytes)
            yield chunk

    if allow_raw and ctype.startswith(_RAW_TYPES):
        data = b"".join([c async for c in limited(max_bytes)])
        return Upload(data, None, dict(request.query_params))
    if not ctype.startswith("multipart/form-data"):
        raise CozyError(
            "send multipart/form-data with the audio in a `file` field",
            code="VALIDATION_ERROR",
            status=400,
            param="file",
        )
    parser = MultiPartParser(request.headers, limited(budget), max_files=1, max_fields=64, max_part_size=64 * 1024)
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise CozyError(f"malformed multipart body: {exc.message}", code="VALIDATION_ERROR", status=400) from None
    fields: dict[str, str] = {}
    lists: dict[str, list[str]] = {}
    upload: UploadFile | None = None
    try:
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                if key == "file":
                    upload = value
                continue
            fields[key] = value
            lists.setdefault(key, []).append(value)
        if upload is None:
            raise CozyError(
                "the `file` field (an audio file) is required", code="VALIDATION_ERROR", status=400, param="file"
            )
        data = await upload.read()
    finally:
        await form.close()
    if len(data) > max_bytes:
        raise _too_large(max_bytes)
    return Upload(data, upload.filename, fields, lists)

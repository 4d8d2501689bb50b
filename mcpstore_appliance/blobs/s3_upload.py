"""Uploading one local file to S3: a single PUT, or a multipart upload above `multipart_threshold_bytes`.

Every body is signed with its real sha256 (not UNSIGNED-PAYLOAD or aws-chunked signatures): a single PUT's
body hash *is* the content address, and a multipart part is read into a bounded buffer (`part_size_bytes`)
and hashed before it is sent. S3 then rejects a body that does not match what we hashed, so a corrupted
upload never lands under a content address; for servers that do not check, the bytes sent are hashed as
they go and a mismatch is taken away again.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import os
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from mcpstore_appliance.config import S3Settings
from mcpstore_appliance.errors import InvalidInput

from ._util import check_expected
from .s3_client import S3Client, S3Error

log = logging.getLogger("mcpstore_appliance.blobs.s3")

MAX_PARTS = 10_000  # an S3 limit: larger objects get larger parts


async def put_single(client: S3Client, object_path: str, path: Path, size: int, sha256: str,
                     chunk_size: int) -> None:
    digests: list[Any] = []

    def body() -> AsyncIterator[bytes]:
        digests.append(hashlib.sha256())
        return _file_chunks(path, size, chunk_size, digests[-1])

    headers = {"content-length": str(size), "content-type": "application/octet-stream"}
    try:
        await client.simple("PutObject", "PUT", object_path, headers=headers, body=body, payload_hash=sha256)
    except S3Error as exc:
        if exc.code == "XAmzContentSHA256Mismatch":  # S3 verified our signed hash and refused
            raise InvalidInput("content does not match the given sha256", code="digest_mismatch") from None
        raise
    sent = digests[-1].hexdigest()
    if sent != sha256:
        # The server did not verify the payload hash (some S3-compatible servers do not):
        # take the wrong bytes away from the content address again.
        await client.simple("DeleteObject", "DELETE", object_path, ok=(200, 204))
        check_expected(sha256, sent)


async def put_multipart(client: S3Client, settings: S3Settings, object_path: str, path: Path, size: int,
                        sha256: str) -> None:
    part_size = max(settings.part_size_bytes, math.ceil(size / MAX_PARTS))
    created = ET.fromstring(await client.simple("CreateMultipartUpload", "POST", object_path,
                                                query=[("uploads", "")]))
    upload_id = created.findtext("{*}UploadId") or ""
    upload = [("uploadId", upload_id)]
    try:
        with open(path, "rb") as fh:
            parts, whole = await _upload_parts(client, settings.upload_concurrency, object_path, upload, fh, size,
                                               part_size)
        check_expected(sha256, whole)
        xml = "".join(f"<Part><PartNumber>{n}</PartNumber><ETag>{escape(etag)}</ETag></Part>" for n, etag in parts)
        payload = f"<CompleteMultipartUpload>{xml}</CompleteMultipartUpload>".encode()
        done = ET.fromstring(await client.simple(
            "CompleteMultipartUpload", "POST", object_path, query=upload, body=payload,
            payload_hash=hashlib.sha256(payload).hexdigest()))
        if done.tag.rsplit("}", 1)[-1] == "Error":  # S3 may report a failed completion inside a 200
            raise S3Error("CompleteMultipartUpload", 200, done.findtext("{*}Code") or "Error",
                          done.findtext("{*}Message") or "")
    except BaseException:
        await _abort(client, object_path, upload)
        raise


async def _upload_parts(client: S3Client, concurrency: int, object_path: str, upload: list[tuple[str, str]], fh,
                        size: int, part_size: int) -> tuple[list[tuple[int, str]], str]:
    """Upload the parts, `concurrency` at a time; returns [(part number, ETag)] in order and the sha256 of the
    whole file. Parts are read one after another (the whole-file digest needs the bytes in order), so memory
    holds at most `concurrency` parts. The first failure cancels the others."""
    digest = hashlib.sha256()
    pending = iter(enumerate(range(0, size, part_size), start=1))
    read_in_order = asyncio.Lock()
    etags: dict[int, str] = {}

    async def upload_parts_in_turn() -> None:
        while True:
            async with read_in_order:
                number, offset = next(pending, (None, 0))
                if number is None:
                    return
                data, part_hash = await asyncio.to_thread(
                    _read_part, fh, offset, min(part_size, size - offset), digest)
            response = await client.request(
                "UploadPart", "PUT", object_path, query=[("partNumber", str(number)), *upload],
                headers={"content-length": str(len(data))}, body=data, payload_hash=part_hash)
            response.release()
            etags[number] = response.headers.get("ETag", "")

    workers = [asyncio.ensure_future(upload_parts_in_turn())
               for _ in range(min(concurrency, math.ceil(size / part_size)))]
    try:
        await asyncio.gather(*workers)
    except BaseException:
        for worker in workers:
            worker.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        raise
    return sorted(etags.items()), digest.hexdigest()


async def _abort(client: S3Client, object_path: str, upload: list[tuple[str, str]]) -> None:
    try:
        await client.simple("AbortMultipartUpload", "DELETE", object_path, query=upload, ok=(200, 204))
    except Exception as exc:  # the original failure matters more; a lifecycle rule reaps leftovers
        log.warning("could not abort a multipart upload: %s", exc)


async def _file_chunks(path: Path, size: int, chunk_size: int, digest: Any) -> AsyncIterator[bytes]:
    """Stream the first `size` bytes of a file, hashing what is actually sent."""
    with open(path, "rb") as fh:
        remaining = size
        while remaining:
            block = await asyncio.to_thread(fh.read, min(chunk_size, remaining))
            if not block:
                raise OSError(f"{path} shrank while it was uploaded")
            digest.update(block)
            remaining -= len(block)
            yield block


def _read_part(fh, offset: int, length: int, digest: Any) -> tuple[bytes, str]:
    data = os.pread(fh.fileno(), length, offset)
    if len(data) != length:
        raise OSError("file shrank while it was uploaded")
    digest.update(data)
    return data, hashlib.sha256(data).hexdigest()

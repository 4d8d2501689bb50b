"""Content-addressed blob storage: local disk (default) or an S3-compatible bucket."""

from __future__ import annotations

from mcpstore_appliance.config import Settings

from .base import BlobStore, StoredBlob
from .local import LocalBlobStore
from .s3 import S3BlobStore, S3Error

__all__ = ["BlobStore", "StoredBlob", "LocalBlobStore", "S3BlobStore", "S3Error", "open_blob_store"]


def open_blob_store(settings: Settings) -> BlobStore:
    """The store chosen by `storage.backend`. Raises ConfigError (one line) on an incomplete S3 section."""
    data_dir = settings.data_dir
    if settings.storage.backend == "s3":
        # Uploads are spooled next to the app's other temp files before they go to the bucket.
        return S3BlobStore(settings.storage.s3, spool_dir=data_dir / "tmp")
    return LocalBlobStore(data_dir / "blobs")  # catalog/sweep.py removes what crashed writes left

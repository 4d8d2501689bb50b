"""SigV4 signing checked against AWS's published example and against botocore as an oracle,
plus the S3 store's addressing rules (no network)."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from mcpstore_appliance.blobs.s3 import S3BlobStore, content_disposition
from mcpstore_appliance.blobs.sigv4 import EMPTY_SHA256, SigV4Signer, canonical_query, uri_encode
from mcpstore_appliance.config import ConfigError, S3Settings

# The example credentials and request from AWS's "Authenticating Requests: Using Query Parameters" page.
AWS_KEY, AWS_SECRET = "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
AWS_NOW = datetime(2013, 5, 24, tzinfo=timezone.utc)


def test_presigned_url_matches_the_aws_documentation_example():
    signer = SigV4Signer(AWS_KEY, AWS_SECRET, "us-east-1")
    query = signer.presign("GET", "examplebucket.s3.amazonaws.com", "/test.txt", [], 86400, now=AWS_NOW)
    assert query.endswith("X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404")
    assert "X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request" in query
    assert AWS_SECRET not in query


def botocore_signature(method, host, path, query, headers, payload_hash, now, region="eu-west-1"):
    """What botocore computes for the same request as it goes on the wire (the way moto checks)."""
    url = f"https://{host}{uri_encode(path, keep_slash=True)}" + (f"?{canonical_query(query)}" if query else "")
    all_headers = {**headers, "host": host, "x-amz-date": now.strftime("%Y%m%dT%H%M%SZ"),
                   "x-amz-content-sha256": payload_hash}
    request = AWSRequest(method=method, url=url, headers=all_headers)
    request.context["timestamp"] = all_headers["x-amz-date"]
    auth = S3SigV4Auth(Credentials(AWS_KEY, AWS_SECRET), "s3", region)
    return auth.signature(auth.string_to_sign(request, auth.canonical_request(request)), request)


@pytest.mark.parametrize("method,path,query,headers,payload", [
    ("GET", "/bucket/blobs/" + "a" * 64, [], {}, EMPTY_SHA256),
    ("GET", "/bucket", [("list-type", "2"), ("prefix", "b (1)/!*'ü+ /"), ("max-keys", "2"),
                        ("continuation-token", "1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=")], {}, EMPTY_SHA256),
    ("POST", "/bucket/key", [("uploads", "")], {}, EMPTY_SHA256),
    ("PUT", "/bucket/key", [("partNumber", "3"), ("uploadId", "abc~def+ghi")], {}, "b" * 64),
    ("PUT", "/b/with space/ü/(x)!*'", [], {"x-amz-meta-note": "  two   spaces "}, "c" * 64),
])
def test_header_signature_matches_botocore(method, path, query, headers, payload):
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    signer = SigV4Signer(AWS_KEY, AWS_SECRET, "eu-west-1")
    signed = signer.sign_headers(method, "s3.example.test:9000", path, query, headers, payload, now=now)
    expected = botocore_signature(method, "s3.example.test:9000", path, query, headers, payload, now)
    assert signed["authorization"].endswith(f"Signature={expected}")
    assert AWS_SECRET not in str(signed) and AWS_SECRET not in repr(signer)


def s3_settings(**overrides) -> S3Settings:
    return S3Settings(**{"bucket": "bundles", "access_key_id": "AK", "secret_access_key": "SK", **overrides})


@pytest.mark.parametrize("overrides,host,bucket_path", [
    ({}, "bundles.s3.us-east-1.amazonaws.com", ""),  # AWS: virtual host
    ({"region": "eu-west-1"}, "bundles.s3.eu-west-1.amazonaws.com", ""),
    ({"bucket": "my.bundles"}, "s3.us-east-1.amazonaws.com", "/my.bundles"),  # dots break TLS: path
    ({"endpoint": "http://127.0.0.1:9000"}, "127.0.0.1:9000", "/bundles"),  # other servers: path
    ({"endpoint": "http://minio:9000/", "addressing_style": "virtual"}, "bundles.minio:9000", ""),
    ({"endpoint": "https://proxy.example/s3", "addressing_style": "path"}, "proxy.example", "/s3/bundles"),
])
def test_addressing_styles(tmp_path, overrides, host, bucket_path):
    store = S3BlobStore(s3_settings(**overrides), spool_dir=tmp_path)
    assert (store.client.host, store.client.bucket_path) == (host, bucket_path)
    digest = "e" * 64
    url = store.presign_get(digest)
    assert url.split("?")[0].endswith(f"{host}{bucket_path}/blobs/{digest}")
    assert "SK" not in repr(store)


@pytest.mark.parametrize("overrides,message", [
    ({"bucket": ""}, "storage.s3.bucket"),
    ({"secret_access_key": ""}, "storage.s3.secret_access_key"),
    ({"endpoint": "ftp://files.example"}, "storage.s3.endpoint"),
    ({"endpoint": "not a url"}, "storage.s3.endpoint"),
])
def test_incomplete_settings_fail_with_one_clear_line(tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message):
        S3BlobStore(s3_settings(**overrides), spool_dir=Path(tmp_path))


def test_presign_ttl_and_disposition(tmp_path):
    store = S3BlobStore(s3_settings(endpoint="http://127.0.0.1:9000", presign_ttl_seconds=120), spool_dir=tmp_path)
    assert "X-Amz-Expires=120&" in store.presign_get("e" * 64)
    assert "X-Amz-Expires=604800&" in store.presign_get("e" * 64, expires_seconds=10**9)  # S3's limit
    assert content_disposition("demo-1.0.0.mcpb") == 'attachment; filename="demo-1.0.0.mcpb"'
    assert content_disposition('evil"\r\n/../x.mcpb') == 'attachment; filename="evil..x.mcpb"'
    assert content_disposition("ünï.mcpb") == (
        "attachment; filename=\"_n_.mcpb\"; filename*=UTF-8''%C3%BCn%C3%AF.mcpb")

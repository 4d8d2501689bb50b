"""Hostile input on every surface (manifest, publish form and query, JSON bodies, page forms, query strings) is a
clear 4xx with a code that explains itself, and stores nothing: no row, no blob, no temporary file."""

from __future__ import annotations

import json

import aiohttp
import pytest

from tests.data.bundles import NODE_SERVER, bundle_bytes, node_manifest
from tests.integration.publish_support import OCTET, assert_nothing_stored, bundle, publish, snapshot, user
from tests.integration.test_pages import PASSWORD, Browser


@pytest.fixture
async def app(start_app):
    return await start_app()


def raw_bundle(manifest_text: str) -> bytes:
    return bundle_bytes(manifest_text.encode(), {"server/index.js": NODE_SERVER})


def manifest_with(marker_value: str, **fields) -> str:
    """manifest.json text with `marker_value` spliced in raw (for escapes json.dumps would not write)."""
    return json.dumps(node_manifest(**{k: "MARK" for k in fields})).replace('"MARK"', marker_value)


@pytest.mark.parametrize("data, code, path", [
    (raw_bundle(manifest_with('"x\\ud800y"', description=1)), "manifest_encoding", "$.description"),
    (raw_bundle(manifest_with('{"k\\udfff": 1}', _meta=1)), "manifest_encoding", None),
    (raw_bundle(manifest_with("[" * 200_000 + "]" * 200_000, _meta=1)), "manifest_too_deep", None),
    (raw_bundle(manifest_with("[" * 65 + "]" * 65, _meta=1)), "manifest_too_deep", None),
    (bundle(display_name="a\x00b"), "manifest_invalid", "$.display_name"),
    (bundle(display_name="two\nlines"), "manifest_invalid", "$.display_name"),
    (bundle(description="\x1b[31mred"), "manifest_invalid", "$.description"),
])
async def test_bad_manifest_text_is_422_and_stores_nothing(app, data, code, path):
    _, token = await user(app, "alice")
    before = await snapshot(app)
    for _ in range(3):  # again and again: nothing piles up
        status, body = await publish(app.client, data, token)
        assert status == 422 and body["error"]["code"] == code, body
        if path:
            assert path in {d["path"] for d in body["error"]["details"]}
    await assert_nothing_stored(app, before)


async def test_multi_line_manifest_fields_keep_their_line_breaks(app):
    _, token = await user(app, "alice")
    status, body = await publish(app.client, bundle(description="line one\nline two\ttabbed"), token)
    assert status == 201, body


FILE_PART = (b'--zz\r\nContent-Disposition: form-data; name="file"; filename="b.mcpb"\r\n\r\n' + bundle()
             + b"\r\n--zz--\r\n")


@pytest.mark.parametrize("content_type, body, status, code", [
    ("multipart/form-data", b"--zz\r\n\r\nhello", 400, "malformed_multipart"),
    ("multipart/mixed; boundary=zz", b"--zz\r\n\r\nhello\r\n--zz--\r\n", 415, "unsupported_media_type"),
    ("multipart/form-data; boundary=zz", b"garbage without the boundary", 400, "malformed_multipart"),
    ("multipart/form-data; boundary=zz", b"--zz\r\nno colon in this header\r\n\r\nv\r\n--zz--\r\n", 400,
     "malformed_multipart"),
    ("multipart/form-data; boundary=zz",
     b'--zz\r\nContent-Disposition: form-data; name="category"\r\n\r\na\x00b\r\n' + FILE_PART, 400,
     "control_character"),
    ("multipart/form-data; boundary=zz",
     b'--zz\r\nContent-Disposition: form-data; name="namespace"\r\n\r\n\xff\xfe\r\n' + FILE_PART, 400,
     "invalid_unicode"),
])
async def test_malformed_multipart_is_a_client_error(app, content_type, body, status, code):
    _, token = await user(app, "alice")
    before = await snapshot(app)
    answer = await app.client.with_token(token).post("/api/packages", data=body, headers={"Content-Type": content_type})
    assert answer[0] == status and answer[1]["error"]["code"] == code, answer[:2]
    await assert_nothing_stored(app, before)


async def test_the_dashboard_upload_refuses_malformed_multipart_with_its_form(app):
    await app.user("kim", password=PASSWORD)
    browser = Browser(app.base_url)
    try:
        await browser.log_in("kim")
        csrf = await browser.csrf("/dashboard/publish")
        for content_type, expected in (("multipart/form-data", 400), ("multipart/mixed; boundary=zz", 415),
                                       ("multipart/form-data; boundary=zz", 400)):
            async with browser.session.post(app.base_url + "/dashboard/publish", data=b"--zz\r\n\r\nhello",
                                            headers={"Content-Type": content_type, "X-CSRF-Token": csrf,
                                                     "Accept": "text/html"}) as response:
                html = await response.text()
            assert response.status == expected and "<form" in html, (content_type, response.status)
    finally:
        await browser.close()


@pytest.mark.parametrize("query, code", [
    ({"category": "a\x00b"}, "control_character"),
    ({"namespace": "alice\n"}, "control_character"),
    ({"changelog": "fine\nbut\x07bell"}, "control_character"),
])
async def test_publish_options_with_control_characters_are_refused_before_the_body(app, query, code):
    _, token = await user(app, "alice")
    before = await snapshot(app)
    status, body = await publish(app.client, bundle(), token, **query)
    assert status == 400 and body["error"]["code"] == code, body
    await assert_nothing_stored(app, before)


async def test_a_multi_line_changelog_is_fine(app):
    _, token = await user(app, "alice")
    status, body = await publish(app.client, bundle(), token, changelog="- one\n- two\r\n\tindented")
    assert status == 201, body


@pytest.mark.parametrize("path, payload, code", [
    ("/api/orgs", b'{"slug": "acme", "name": "x\\ud800"}', "invalid_unicode"),
    ("/api/orgs", b'{"slug": "acme", "na\\u0000me": "x"}', "control_character"),
    ("/api/tokens", b'{"name": "ab\\u0000"}', "control_character"),
    ("/api/tokens", b'{"name": "two\\nlines"}', "invalid_body"),  # a name is one line
    ("/api/tokens", b"[" * 200_000 + b"]" * 200_000, "json_too_deep"),
    ("/api/tokens", b'{"name": "x", "scopes": ' + b"[" * 70 + b"]" * 70 + b"}", "json_too_deep"),
    ("/api/tokens", b'{"name": "\xff"}', "invalid_unicode"),
])
async def test_bad_json_bodies_are_400_and_change_nothing(app, path, payload, code):
    _, token = await user(app, "alice", scopes=("read", "account"))
    client = app.client.with_token(token)
    tokens_before = (await client.get("/api/tokens"))[1]["tokens"]
    status, body, _ = await client.post(path, data=payload, headers={"Content-Type": "application/json"})
    assert status == 400 and body["error"]["code"] == code, body
    assert (await client.get("/api/tokens"))[1]["tokens"] == tokens_before
    assert (await client.get("/api/orgs"))[1]["orgs"] == []


@pytest.mark.parametrize("path", ["/api/search?q=a%00b", "/api/search?q=a%1Bb", "/api/search?q%00=x",
                                  "/api/packages/alice/hello-node?x=%1B", "/api/packages/ali%00ce/hello-node",
                                  "/v0.1/servers?search=%7F"])
async def test_control_characters_in_urls_are_400(app, path):
    status, body, _ = await app.client.get(path)
    assert status == 400, (status, body)
    error = body["error"]
    assert (error if isinstance(error, str) else error["code"]) in ("control_character",) or "control character" in \
        (error if isinstance(error, str) else error["message"])


async def test_page_forms_refuse_control_characters_and_store_nothing(app):
    browser = Browser(app.base_url)
    try:
        status, html, _ = await browser.post("/signup", {"email": "x@example.com", "username": "xavier",
                                                         "display_name": "X\x00", "password": PASSWORD},
                                             token_from="/signup")
        assert status == 400 and "control character" in html
        assert await app.services.accounts.user_count() == 0
        status, html, _ = await browser.post("/signup", {"email": "x@example.com", "username": "xavier",
                                                         "display_name": "X", "password": PASSWORD},
                                             token_from="/signup")
        assert status == 200 and await app.services.accounts.user_count() == 1
    finally:
        await browser.close()


async def test_yank_reason_on_the_page_may_span_lines_but_not_hold_a_nul(app):
    _, token = await app.user("hal", password=PASSWORD)
    await publish(app.client, bundle(name="tool"), token)
    browser = Browser(app.base_url)
    try:
        await browser.log_in("hal")
        page = "/dashboard/packages/hal/tool"
        status, html, _ = await browser.post(page + "/versions/1.0.0/yank", {"reason": "a\x00b"}, token_from=page)
        assert status == 400 and "control character" in html
        assert (await app.client.get("/api/packages/hal/tool/versions"))[1]["versions"][0]["yanked"] is False
        status, _, _ = await browser.post(page + "/versions/1.0.0/yank", {"reason": "broken\nsee #12"},
                                          token_from=page)
        assert status == 200
    finally:
        await browser.close()


async def test_octet_stream_publish_still_works(app):
    _, token = await user(app, "alice")
    status, body, _ = await app.client.with_token(token).post("/api/packages", data=bundle(), headers=OCTET)
    assert status == 201, body


async def test_an_id_too_large_for_sqlite_is_404_not_500(app):
    _, token = await user(app, "alice", scopes=("read", "account"))
    for path in ("/api/tokens/999999999999999999999999999999", "/api/tokens/9223372036854775808"):
        status, body, _ = await app.client.with_token(token).delete(path)
        assert status == 404 and body["error"]["code"] == "not_found", (path, body)


async def test_a_line_break_in_a_path_gets_the_json_error_not_aiohttps_text(app):
    for path in ("/v0.1/servers/a%0Ab/versions", "/api/packages/al%0Aice/x", "/no%0Awhere"):
        status, body, response = await app.client.get(path)
        assert status == 400 and response.content_type == "application/json", (path, status, body)


async def test_a_page_form_sent_as_multipart_still_needs_its_csrf_token(app):
    """web/auth.py leaves a multipart form's csrf_token to the handler that reads the form; every page form is read
    by web/forms.read_form, which checks it (before, a multipart POST to /account/orgs skipped the check)."""
    await app.user("kim", password=PASSWORD)
    browser = Browser(app.base_url)
    try:
        await browser.log_in("kim")
        for fields in ({"slug": "acme", "name": "Acme"}, {"slug": "acme", "name": "Acme", "csrf_token": "wrong"}):
            form = aiohttp.FormData(fields, default_to_multipart=True)
            status, html, _ = await browser.post("/account/orgs", form, token_from=None)
            assert status == 403 and "CSRF" in html, status
        assert (await app.client.get("/api/orgs/acme"))[0] in (401, 404)
        form = aiohttp.FormData({"slug": "acme", "name": "Acme", "csrf_token": await browser.csrf("/account")},
                                default_to_multipart=True)
        status, _, response = await browser.post("/account/orgs", form, token_from=None)
        assert status == 200 and response.url.path == "/orgs/acme", status
    finally:
        await browser.close()

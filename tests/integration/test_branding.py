"""The operator's name, logo and accent colour ([branding]) on the pages (escaped), in the stylesheet and in
the rendered MDM profiles; a logo path or colour that could escape its place is refused when the settings load."""

from __future__ import annotations

import plistlib
import xml.etree.ElementTree as ET

import pytest

from mcpstore_appliance.config import ConfigError, load_settings
from tests.seed import make_org

SVG = b'<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"><script>alert(1)</script></svg>'
BRANDING = {"name": "Acme <b>Registry</b>", "operator": "Acme & Sons", "logo": "acme.svg",
            "accent_color": "#AA3300"}


@pytest.fixture
async def branded(start_app, tmp_path):
    data = tmp_path / "branded"
    (data / "branding").mkdir(parents=True)
    (data / "branding" / "acme.svg").write_bytes(SVG)
    return await start_app(data_dir=data, branding=BRANDING)


async def test_pages_carry_the_brand_escaped(branded):
    status, body, _ = await branded.client.get("/login", headers={"Accept": "text/html"})
    page = body.decode()
    assert status == 200
    assert "Acme &lt;b&gt;Registry&lt;/b&gt;" in page and "<b>Registry" not in page
    assert "Acme &amp; Sons" in page and 'src="/branding/logo"' in page and "/branding.css" in page
    status, css, response = await branded.client.get("/branding.css")
    assert status == 200 and b"--accent: #aa3300" in css and response.headers["Content-Type"].startswith("text/css")
    status, logo, response = await branded.client.get("/branding/logo")
    assert status == 200 and logo == SVG and response.headers["Content-Type"] == "image/svg+xml"
    assert "sandbox" in response.headers["Content-Security-Policy"]  # its script never runs


async def test_profiles_name_the_operator(branded):
    _, alice = await branded.user("alice")
    await make_org(branded, alice, "acme")
    status, body, _ = await branded.client.with_token(alice).post("/api/orgs/acme/device-tokens", json={"name": "d"})
    device = branded.client.with_token(body["token"])
    status, raw, _ = await device.get("/policy/acme.mobileconfig")
    profile = plistlib.loads(raw)
    assert profile["PayloadOrganization"] == "Acme & Sons"
    assert profile["PayloadDisplayName"].startswith("Acme <b>Registry</b>: ")  # plist text, escaped by plistlib
    status, raw, _ = await device.get("/policy/acme.adml")
    root = ET.fromstring(raw)
    texts = [element.text or "" for element in root.iter()]
    assert any("Acme <b>Registry</b>" in text for text in texts) and b"<b>" not in raw


async def test_a_logo_outside_the_branding_folder_is_not_served(start_app, tmp_path):
    data = tmp_path / "linked"
    (data / "branding").mkdir(parents=True)
    secret = tmp_path / "secret.svg"
    secret.write_bytes(SVG)
    (data / "branding" / "logo.svg").symlink_to(secret)
    app = await start_app(data_dir=data, branding={"logo": "logo.svg"})
    assert (await app.client.get("/branding/logo"))[0] == 404
    plain = await start_app()
    assert (await plain.client.get("/branding/logo"))[0] == 404  # none configured
    status, body, _ = await plain.client.get("/login", headers={"Accept": "text/html"})
    assert b"<span>mcpstore</span>" in body


@pytest.mark.parametrize("branding", [
    {"logo": "../keys/ledger.key"}, {"logo": "/etc/passwd"}, {"logo": "sub/logo.svg"}, {"logo": "logo.exe"},
    {"logo": "..svg"}, {"logo": "logo.svg/"}, {"accent_color": "red"}, {"accent_color": "#12345g"},
    {"accent_color": "#123456;} body{x:y"}, {"name": ""}, {"name": "two\nlines"}, {"operator": "x" * 101},
])
def test_bad_branding_is_refused_when_settings_load(branding):
    with pytest.raises(ConfigError) as raised:
        load_settings(environ={}, branding=branding)
    assert "branding." in str(raised.value)

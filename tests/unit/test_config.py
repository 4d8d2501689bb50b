from pathlib import Path

import pytest

from mcpstore_appliance.config import ConfigError, load_settings


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_defaults_then_file_then_environment(tmp_path):
    config = write(tmp_path, "[server]\nport = 9000\nhost = '0.0.0.0'\n")
    settings = load_settings(config, environ={"MCPSTORE_SERVER__PORT": "9100"})
    assert settings.server.port == 9100  # environment beats the file
    assert settings.server.host == "0.0.0.0"  # the file beats the default
    assert settings.accounts.signup == "open"  # default


def test_nested_section_and_json_list_from_environment(tmp_path):
    settings = load_settings(environ={"MCPSTORE_STORAGE__S3__BUCKET": "bundles",
                                      "MCPSTORE_SERVER__TRUSTED_PROXIES": '["10.0.0.0/8"]'})
    assert settings.storage.s3.bucket == "bundles"
    assert settings.server.trusted_proxies == ["10.0.0.0/8"]


@pytest.mark.parametrize("text, key", [
    ("[server]\nprot = 1\n", "server.prot"),
    ("colour = 'blue'\n", "colour"),
    ("[storage.s3]\nbuckt = 'x'\n", "storage.s3.buckt"),
])
def test_unknown_key_names_the_key(tmp_path, text, key):
    with pytest.raises(ConfigError) as error:
        load_settings(write(tmp_path, text), environ={})
    assert f"unknown key '{key}'" in str(error.value)
    assert "\n" not in str(error.value)


def test_wrong_type_names_the_key(tmp_path):
    with pytest.raises(ConfigError, match="'server.port'"):
        load_settings(write(tmp_path, "[server]\nport = 'eighty'\n"), environ={})
    with pytest.raises(ConfigError, match="'accounts.signup'"):
        load_settings(environ={"MCPSTORE_ACCOUNTS__SIGNUP": "sometimes"})


def test_unknown_environment_key_is_refused():
    with pytest.raises(ConfigError, match="unknown key 'server.colour'"):
        load_settings(environ={"MCPSTORE_SERVER__COLOUR": "red"})


def test_unreadable_and_invalid_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path / "missing.toml", environ={})
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(write(tmp_path, "[server\nport=1"), environ={})


def test_example_config_is_complete_and_valid():
    """config.example.toml documents every key: parsing it gives exactly the defaults."""
    example = Path(__file__).parents[2] / "config.example.toml"
    assert load_settings(example, environ={}) == load_settings(environ={})


def test_client_variables_are_not_settings():
    """`mcpstore serve` must start in a shell that also has the client's variables exported."""
    environ = {"MCPSTORE_TOKEN": "mcps_x", "MCPSTORE_REGISTRY": "http://r", "MCPSTORE_CONFIG_DIR": "/tmp/c",
               "MCPSTORE_LOG_LEVEL": "DEBUG", "MCPSTORE_PASSWORD": "p", "MCPSTORE_ADMIN_PASSWORD": "p",
               "MCPSTORE_TEST_CACHE": "/tmp/t", "MCPSTORE_SERVER__PORT": "9001"}
    assert load_settings(environ=environ).server.port == 9001


@pytest.mark.parametrize("public_url, prefix", [
    ("https://mcp.example.com", "com.example.mcp"),
    ("https://MCP.Example.com:8443/registry/", "com.example.mcp"),
    ("", "local.mcpstore"),  # http://127.0.0.1:8080: no name to reverse
    ("http://192.168.1.20:8080", "local.mcpstore"),
    ("http://[2001:db8::1]:8080", "local.mcpstore"),
    ("http://localhost:8080", "local.mcpstore"),
    ("https://under_score.example.com", "local.mcpstore"),  # not a DNS name a registry name may carry
])
def test_registry_names_default_from_the_public_url(public_url, prefix):
    assert load_settings(environ={}, server={"public_url": public_url}).registry_name_prefix == prefix


def test_registry_name_prefix_setting_wins():
    settings = load_settings(environ={"MCPSTORE_REGISTRY__NAME_PREFIX": "org.acme.tools"},
                             server={"public_url": "https://mcp.example.com"})
    assert settings.registry_name_prefix == "org.acme.tools"


def test_sso_settings_refuse_symmetric_algorithms_and_bad_resolvers():
    with pytest.raises(ConfigError, match="'sso.oidc.algorithms'"):
        load_settings(environ={"MCPSTORE_SSO__OIDC__ALGORITHMS": '["HS256"]'})
    with pytest.raises(ConfigError, match="'sso.oidc.algorithms'"):
        load_settings(environ={"MCPSTORE_SSO__OIDC__ALGORITHMS": '["none"]'})
    with pytest.raises(ConfigError, match="'sso.dns_resolver'"):
        load_settings(environ={"MCPSTORE_SSO__DNS_RESOLVER": "127.0.0.1"})
    assert load_settings(environ={"MCPSTORE_SSO__DNS_RESOLVER": "[::1]:5353"}).sso.dns_resolver == "[::1]:5353"

"""The host allow-list, the signature format and the retry schedule."""

from __future__ import annotations

import hashlib
import hmac
import re
from datetime import timedelta
from pathlib import Path

import pytest

from provisioner.app import create_app
from provisioner.config import Settings
from provisioner.webhooks import allowlist
from provisioner.webhooks.allowlist import AllowList, HostRefusedError
from provisioner.webhooks.service import retry_delay
from provisioner.webhooks.signing import generate_secret, sign, verify
from tests.provisioner.conftest import SCRIPTED_ENGINE, make_settings


def _resolver(table: dict[str, list[str]]) -> allowlist.Resolver:
    def resolve(host: str, _port: int) -> list[str]:
        if host not in table:
            raise OSError("Name or service not known")
        return table[host]

    return resolve


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/hook",  # loopback
        "http://127.1.2.3:8080/",  # all of 127/8
        "http://[::1]/",
        "http://10.0.0.5/",  # private
        "http://172.16.4.4/",
        "http://192.168.1.1/",
        "http://169.254.169.254/latest/meta-data",  # link-local: cloud metadata
        "http://[fe80::1]/",
        "http://[fd12:3456::1]/",  # unique-local
        "http://224.0.0.1/",  # multicast
        "http://[ff02::1]/",
        "http://0.0.0.0/",  # unspecified
        "http://[::]/",
        "http://[::ffff:127.0.0.1]/",  # IPv4-mapped loopback
        "http://100.64.0.1/",  # carrier-grade NAT: not global
    ],
)
def test_non_public_addresses_are_refused_unless_listed(url: str) -> None:
    with pytest.raises(HostRefusedError, match="not a public address"):
        AllowList.parse("").check(url)


def test_public_addresses_need_no_listing() -> None:
    assert AllowList.parse("").check("https://93.184.215.14/hook").address == "93.184.215.14"
    target = AllowList.parse("").check(
        "https://hooks.example.com/x?y=1", _resolver({"hooks.example.com": ["93.184.215.14"]})
    )
    assert target.address == "93.184.215.14"
    assert target.connect_url == "https://93.184.215.14:443/x?y=1"
    assert target.host_header == "hooks.example.com"


def test_listed_addresses_cidrs_and_names_are_allowed() -> None:
    listed = AllowList.parse(" 127.0.0.1 , 10.1.0.0/16,hooks.internal , ::1")
    assert listed.check("http://127.0.0.1:9000/").host_header == "127.0.0.1:9000"
    assert listed.check("http://10.1.200.3/").address == "10.1.200.3"
    assert listed.check("http://[::1]:81/").connect_url == "http://[::1]:81/"
    target = listed.check("http://HOOKS.internal/", _resolver({"hooks.internal": ["10.9.9.9"]}))
    assert target.address == "10.9.9.9"
    with pytest.raises(HostRefusedError, match="10.2.0.1"):
        listed.check("http://10.2.0.1/")  # outside the listed range


def test_a_name_resolving_to_loopback_is_refused() -> None:
    with pytest.raises(HostRefusedError, match="resolves to 127.0.0.1"):
        AllowList.parse("").check("http://localhost:8000/")


def test_every_resolved_address_is_checked() -> None:
    resolver = _resolver({"mixed.example.com": ["93.184.215.14", "10.0.0.7"]})
    with pytest.raises(HostRefusedError, match="10.0.0.7"):
        AllowList.parse("").check("http://mixed.example.com/", resolver)
    # Listing the private address allows the name.
    assert AllowList.parse("10.0.0.7").check("http://mixed.example.com/", resolver)


def test_unresolvable_names_and_bad_urls_are_refused() -> None:
    with pytest.raises(HostRefusedError, match="does not resolve"):
        AllowList.parse("").check("http://nowhere.invalid/", _resolver({}))
    for url, reason in [
        ("ftp://93.184.215.14/", "http"),
        ("file:///etc/passwd", "http"),
        ("http:///path", "host"),
        ("http://user:pw@93.184.215.14/", "credentials"),
        ("http://93.184.215.14:99999/", "valid URL"),
    ]:
        with pytest.raises(HostRefusedError, match=reason):
            AllowList.parse("").check(url)


@pytest.mark.parametrize("entry", ["10.0.0.0/33", "not a host", "a..b", "-x.com", "1.2.3.4/x"])
def test_a_malformed_setting_stops_the_app_naming_the_entry(entry: str, tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path, f"sqlite:///{tmp_path / 'r.db'}", webhook_allowed_hosts=f"127.0.0.1,{entry}"
    )
    with pytest.raises(ValueError, match=f"webhook allowed hosts: {re.escape(repr(entry))}"):
        create_app(settings, engine_reference=SCRIPTED_ENGINE)


def test_the_signature_is_the_hmac_sha256_of_the_raw_body() -> None:
    secret, body = "s3cr3t-s3cr3t-s3cr3t", b'{"id":"1","type":"operation.failed"}'
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    assert sign(secret, body) == f"sha256={expected}"
    assert verify(secret, body, f"sha256={expected}")
    assert not verify(secret, body + b" ", f"sha256={expected}")
    assert not verify("another-secret-value", body, f"sha256={expected}")
    assert generate_secret() != generate_secret()
    assert len(generate_secret()) > 32


def test_the_retry_schedule_starts_at_5_s_doubles_and_is_capped_at_5_minutes() -> None:
    settings = Settings()
    assert settings.webhook_max_attempts == 10
    delays = [
        retry_delay(n, settings.webhook_retry_initial_s, settings.webhook_retry_max_s)
        for n in range(1, 10)
    ]
    assert delays[:4] == [timedelta(seconds=s) for s in (5, 10, 20, 40)]
    assert delays[-1] == timedelta(minutes=5)
    assert all(later >= earlier for earlier, later in zip(delays, delays[1:], strict=False))

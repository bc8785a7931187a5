"""`provisioner keys …`: the new key is printed once and alone; revoked keys stop working;
tenant keys cannot manage keys."""

from __future__ import annotations

import json
from collections.abc import Callable

from tests.factories import ADMIN_KEY
from tests.provisioner.cli.conftest import Outcome

Cli = Callable[..., Outcome]


def test_create_prints_only_the_key_and_it_works(cli: Cli) -> None:
    outcome = cli("keys", "create", "--scope", "tenant:acme", "--description", "ci")
    assert outcome.code == 0, outcome.err
    key = outcome.out.strip()
    assert outcome.out == f"{key}\n"
    assert key.startswith("mdp_")
    assert "shown only now" in outcome.err
    assert key not in outcome.err
    # The new key sees its tenant only, and may not manage keys.
    assert cli("env", "list", key=key).code == 0
    refused = cli("keys", "list", key=key)
    assert refused.code == 1
    assert refused.error_line() == "error: forbidden: this route needs an admin API key"


def test_create_json_and_list(cli: Cli) -> None:
    created = json.loads(cli("keys", "create", "--scope", "admin", "--json").out)
    listed = cli("keys", "list", "--json")
    assert listed.code == 0, listed.err
    keys = json.loads(listed.out)
    assert created["id"] in {entry["id"] for entry in keys}
    assert created["key"] not in listed.out
    table = cli("keys", "list")
    assert created["id"] in table.out
    assert created["prefix"] in table.out


def test_create_with_a_bad_scope_names_the_field(cli: Cli) -> None:
    outcome = cli("keys", "create", "--scope", "tenant:Not-A-Tenant")
    assert outcome.code == 1
    line = outcome.error_line()
    assert line.startswith("error: validation_error: scope:")


def test_revoke_stops_the_key(cli: Cli) -> None:
    created = json.loads(cli("keys", "create", "--scope", "tenant:acme", "--json").out)
    outcome = cli("keys", "revoke", created["id"])
    assert outcome.code == 0, outcome.err
    assert f"revoked API key {created['id']}" in outcome.out
    refused = cli("env", "list", key=created["key"])
    assert refused.code == 1
    assert refused.error_line() == "error: unauthorized: invalid or revoked API key"
    assert created["key"] not in refused.result.output


def test_revoke_unknown_is_404(cli: Cli) -> None:
    outcome = cli("keys", "revoke", "no-such-key")
    assert outcome.code == 1
    assert outcome.error_line() == "error: not_found: API key no-such-key not found"
    assert ADMIN_KEY not in outcome.result.output

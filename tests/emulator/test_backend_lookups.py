"""moto's dispatcher, remembering which backend serves a host name: the same answers as moto's
own lookup, computed once per name, within a bound."""

from __future__ import annotations

import pytest
from moto import backends
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

from provisioner.emulator.server import BACKEND_LOOKUPS_REMEMBERED, remember_backend_lookups

HOSTS = [
    None,
    "moto_api",
    "s3",
    "s3.us-east-1.amazonaws.com",
    "my-bucket.s3.us-east-1.amazonaws.com",
    "dynamodb.us-east-1.amazonaws.com",
    "sqs.us-east-1.amazonaws.com",
    "states.us-east-1.amazonaws.com",
    "lambda.eu-west-1.amazonaws.com",
    "events.us-east-1.amazonaws.com",
    "monitoring.us-east-1.amazonaws.com",
    "127.0.0.1:4566",
    "nothing.example",
]


def remembering() -> DomainDispatcherApplication:
    dispatcher = DomainDispatcherApplication(create_backend_app)
    remember_backend_lookups(dispatcher)
    return dispatcher


def test_the_remembered_answers_are_moto_own() -> None:
    plain = DomainDispatcherApplication(create_backend_app)
    dispatcher = remembering()
    for host in HOSTS * 2:
        assert dispatcher.get_backend_for_host(host) == plain.get_backend_for_host(host), host
    info = dispatcher.get_backend_for_host.cache_info()  # type: ignore[attr-defined]
    assert (info.misses, info.hits) == (len(HOSTS), len(HOSTS))
    assert info.maxsize == BACKEND_LOOKUPS_REMEMBERED


def test_a_remembered_host_is_not_looked_up_again(monkeypatch: pytest.MonkeyPatch) -> None:
    dispatcher = remembering()
    assert dispatcher.get_backend_for_host("s3.us-east-1.amazonaws.com") == "s3"
    listings: list[int] = []

    def listing() -> list[str]:
        listings.append(1)
        return []

    monkeypatch.setattr(backends, "list_of_moto_modules", listing)
    assert dispatcher.get_backend_for_host("s3.us-east-1.amazonaws.com") == "s3"
    assert listings == []  # answered from memory
    dispatcher.get_backend_for_host("sqs.us-east-1.amazonaws.com")
    assert listings == [1]  # a new name is looked up as moto does

"""The environment list's page statement alone (`EnvironmentRepository.stored_page`): the
SQLite time to read one page of 50 environments' cache keys from the registry `bench.api`
seeds (1,000 environments), every page in turn.

    python -m bench.listing_statement [--environments 1000] [--rounds 20]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from bench.api import ADMIN_KEY, PAGE_SIZE, seed_registry
from provisioner.config import Settings
from provisioner.db import Database
from provisioner.environments.repository import EnvironmentRepository


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--environments", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-listing-") as tmp:
        settings = Settings.model_validate(
            {"data_dir": Path(tmp), "admin_key": ADMIN_KEY, "engine": "pulumi"}
        )
        seed_registry(settings, args.environments)
        database = Database(settings.resolved_database_url)
        timings: list[float] = []
        with database.session(readonly=True) as session:
            repository = EnvironmentRepository(session)
            for round_ in range(args.rounds + 1):
                for offset in range(0, args.environments, PAGE_SIZE):
                    started = time.perf_counter()
                    repository.stored_page(
                        tenant=None, state=None, template=None, outdated=None,
                        drifted=None, code_version="bench", limit=PAGE_SIZE, offset=offset,
                    )  # fmt: skip
                    if round_:  # the first round compiles and warms the page cache
                        timings.append((time.perf_counter() - started) * 1000)
        database.dispose()
    print(
        f"stored_page, {PAGE_SIZE} of {args.environments} environments, {len(timings)} pages: "
        f"median {statistics.median(timings):.3f} ms, "
        f"p90 {statistics.quantiles(timings, n=10)[-1]:.3f} ms"
    )


if __name__ == "__main__":
    main()

"""`python -m provisioner`: run the service with uvicorn on the configured host and port."""

from __future__ import annotations

import uvicorn

from provisioner.app import create_app
from provisioner.config import Settings


def main() -> None:
    settings = Settings()
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,  # structlog owns logging
        access_log=False,
    )


if __name__ == "__main__":
    main()

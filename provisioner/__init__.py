"""The provisioner: a FastAPI service that creates and destroys market-data pipelines."""

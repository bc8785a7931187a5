# syntax=docker/dockerfile:1
#
# The provisioner service with the production (pulumi) engine. Everything an operation needs is
# in the image: the Pulumi CLI and the AWS resource plugin, at exactly the versions the installed
# Python SDKs expect, so nothing is downloaded at run time.
#
#   docker build -t market-data-provisioner .
#   docker run -p 8000:8000 -v provisioner-data:/var/lib/provisioner \
#     -e PROVISIONER_PULUMI_CONFIG_PASSPHRASE=... -e PROVISIONER_AWS_ROLE_ARN=... \
#     market-data-provisioner
#
# tests/provisioner/engines/test_dockerfile.py keeps the pinned versions equal to the SDKs'.

ARG PYTHON_IMAGE=python:3.12-slim-bookworm
# The Pulumi CLI matching the `pulumi` Python SDK.
ARG PULUMI_VERSION=3.272.0
# The resource plugin the `pulumi-aws` Python SDK asks for (its pulumi-plugin.json).
ARG PULUMI_AWS_VERSION=7.51.1

# --- the Pulumi CLI, checksum-verified, and the AWS plugin ---------------------------------
FROM ${PYTHON_IMAGE} AS pulumi
ARG PULUMI_VERSION
ARG PULUMI_AWS_VERSION
# Set by BuildKit; the classic builder leaves it empty, meaning amd64.
ARG TARGETARCH
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/*
# The plugin goes into a PULUMI_HOME of its own, handed to the runtime user below.
ENV PULUMI_HOME=/opt/pulumi-home \
    PULUMI_SKIP_UPDATE_CHECK=true
WORKDIR /tmp/pulumi
RUN set -eu; \
    case "${TARGETARCH:-amd64}" in \
        amd64) arch=x64 ;; \
        arm64) arch=arm64 ;; \
        *) echo "unsupported architecture: ${TARGETARCH}" >&2; exit 1 ;; \
    esac; \
    archive="pulumi-v${PULUMI_VERSION}-linux-${arch}.tar.gz"; \
    checksums="pulumi-${PULUMI_VERSION}-checksums.txt"; \
    curl -fsSLO "https://get.pulumi.com/releases/sdk/${archive}"; \
    curl -fsSLO "https://get.pulumi.com/releases/sdk/${checksums}"; \
    grep " ${archive}\$" "${checksums}" | sha256sum -c -; \
    tar -xzf "${archive}" -C /opt; \
    test "$(/opt/pulumi/pulumi version)" = "v${PULUMI_VERSION}"
RUN /opt/pulumi/pulumi plugin install resource aws v${PULUMI_AWS_VERSION} \
    && /opt/pulumi/pulumi plugin ls

# --- the service and its Python dependencies, in a virtualenv (no dev extra) ---------------
FROM ${PYTHON_IMAGE} AS app
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml README.md ./
COPY provisioner ./provisioner
COPY stacks ./stacks
COPY handlers ./handlers
RUN /opt/venv/bin/pip install .

# --- runtime ------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
# tini as PID 1: operations run in worker processes whose process groups are signalled and,
# past the grace period, killed; the Pulumi CLI and its plugins left behind need a reaper.
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 provisioner \
    && useradd --system --uid 10001 --gid provisioner --create-home \
        --home-dir /home/provisioner --shell /usr/sbin/nologin provisioner \
    && install -d -o provisioner -g provisioner -m 0750 /var/lib/provisioner

COPY --from=pulumi /opt/pulumi /opt/pulumi
COPY --from=pulumi --chown=provisioner:provisioner /opt/pulumi-home /home/provisioner/.pulumi
COPY --from=app /opt/venv /opt/venv

ENV PATH=/opt/venv/bin:/opt/pulumi:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PULUMI_HOME=/home/provisioner/.pulumi \
    PULUMI_SKIP_UPDATE_CHECK=true \
    PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true \
    PROVISIONER_ENGINE=pulumi \
    PROVISIONER_HOST=0.0.0.0 \
    PROVISIONER_PORT=8000 \
    PROVISIONER_DATA_DIR=/var/lib/provisioner \
    PROVISIONER_LOG_JSON=true

# Registry (SQLite by default), file-backend Pulumi state, generated admin key, work dirs.
VOLUME ["/var/lib/provisioner"]
USER provisioner
WORKDIR /home/provisioner
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PROVISIONER_PORT', '8000'), timeout=4)"]
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["python", "-m", "provisioner"]

# One image for every part of the demo mesh: control plane, sidecars, init containers
# (iptables) and the demo services. Build: docker build -t gossamer:latest .
#
# Two optional inputs, for machines without Docker Hub or PyPI (Gossamer's CI builds
# this same file that way, see tests/docker/prepare):
#   --build-arg BASE_IMAGE=IMAGE    another Debian 12 image with python3, pip, iptables,
#                                   iproute2, curl and ca-certificates
#   --build-context wheels=DIR      install Python packages from a wheelhouse in DIR
#                                   (pip wheel -c constraints.txt -w DIR . setuptools wheel)
#                                   instead of from PyPI
ARG BASE_IMAGE=python:3.11-slim-bookworm

# empty unless --build-context wheels=DIR replaces it
FROM scratch AS wheels

FROM ${BASE_IMAGE}

RUN apt-get update \
    && apt-get install -y --no-install-recommends iptables iproute2 curl ca-certificates \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/gossamer
COPY pyproject.toml constraints.txt README.md ./
COPY gossamer ./gossamer
COPY certs ./certs
COPY discovery ./discovery
COPY control ./control
COPY proxy ./proxy

# xds-protos ships stale copies of OpenTelemetry's protobuf modules; reinstalling
# opentelemetry-proto last puts the right ones back (docs/architecture.md, "Known pitfalls").
RUN --mount=type=bind,from=wheels,target=/wheels \
    if [ -n "$(ls -A /wheels)" ]; then export PIP_NO_INDEX=1 PIP_FIND_LINKS=/wheels; fi \
    && pip install --no-cache-dir -c constraints.txt . \
    && pip install --no-cache-dir --force-reinstall --no-deps \
       "opentelemetry-proto==$(sed -n 's/^opentelemetry-proto==//p' constraints.txt)" \
    && gossamer --version

# The sidecar runs as this user so iptables can exempt its own traffic (--uid-owner).
RUN useradd --system --uid 1337 --no-create-home gossamer
ENV PYTHONUNBUFFERED=1 GOSSAMER_LOG_FORMAT=json
ENTRYPOINT ["gossamer"]
CMD ["--help"]

# The role image plus the `migrate` extra (pyarrow, numpy, ADBC), for `domos migrate` at a
# cut-over (docs/cutover.md). Build the role image first, then from the repository root:
#   docker build -f docker/migrate.Dockerfile -t domos-migrate .
ARG DOMOS_IMAGE=domos:latest
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${DOMOS_IMAGE} AS role

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
ARG EXTRA_CA_CERTS=""
COPY docker/pip-install.sh /usr/local/bin/pip-install
COPY --from=role /opt/venv /opt/venv
COPY requirements/migrate.lock /tmp/
RUN pip-install --require-hashes --only-binary=:all: -r /tmp/migrate.lock

FROM ${DOMOS_IMAGE}
COPY --from=builder /opt/venv /opt/venv
CMD ["domos", "migrate", "--help"]

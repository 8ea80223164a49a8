# Stand-in for prometheuscommunity/postgres-exporter: Debian's prometheus-postgres-exporter with
# the official image's contract (ENTRYPOINT postgres_exporter, DATA_SOURCE_* variables, :9187,
# user nobody).
ARG ROOTFS
FROM ${ROOTFS}
RUN apt-get update \
    && apt-get install -y --no-install-recommends prometheus-postgres-exporter wget \
    && rm -rf /var/lib/apt/lists/*
USER nobody
EXPOSE 9187
ENTRYPOINT ["/usr/bin/prometheus-postgres-exporter"]

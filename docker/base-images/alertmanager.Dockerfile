# Stand-in for prom/alertmanager: Debian's prometheus-alertmanager (with amtool) with the official
# image's contract (ENTRYPOINT alertmanager, config in /etc/alertmanager, data in /alertmanager,
# user nobody, wget for health checks).
ARG ROOTFS
FROM ${ROOTFS}
RUN apt-get update \
    && apt-get install -y --no-install-recommends prometheus-alertmanager wget ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /alertmanager && chown nobody:nogroup /alertmanager
USER nobody
EXPOSE 9093
VOLUME ["/alertmanager"]
WORKDIR /alertmanager
ENTRYPOINT ["/usr/bin/prometheus-alertmanager"]
CMD ["--config.file=/etc/alertmanager/alertmanager.yml", "--storage.path=/alertmanager"]

# Prometheus from Debian's package (the binary of this host's `prometheus` package).
# Same interface as the public prom/prometheus image: entrypoint, default flags,
# configuration at /etc/prometheus/prometheus.yml, data in /prometheus, user nobody.
ARG BASE_IMAGE=gossamer-base:bookworm
FROM ${BASE_IMAGE}
COPY prometheus /bin/prometheus
RUN mkdir -p /etc/prometheus /prometheus && chown nobody:nogroup /prometheus
USER nobody
WORKDIR /prometheus
EXPOSE 9090
ENTRYPOINT ["/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]

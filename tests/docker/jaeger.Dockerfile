# Jaeger v2 (all-in-one, memory storage) from the binary tests/peers/build-peers builds.
# Same interface as the public jaegertracing/jaeger image: the binary is the entrypoint,
# so compose.yaml's `command: [--set, ...]` works unchanged.
ARG BASE_IMAGE=gossamer-base:bookworm
FROM ${BASE_IMAGE}
COPY jaeger /usr/local/bin/jaeger
USER 10001
EXPOSE 4317 4318 16686
ENTRYPOINT ["/usr/local/bin/jaeger"]

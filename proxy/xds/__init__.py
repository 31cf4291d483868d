"""The sidecar as an xDS client: the ADS stream, its state machine, and Envoy resources -> ProxyConfig."""

"""Observability queries: golden metrics per service, edges and routes, from Prometheus
(PromQL) or from the sidecars' live /metrics, shaped into the same rows."""

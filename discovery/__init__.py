"""The service registry: model, stores (embedded, etcd) and sources."""

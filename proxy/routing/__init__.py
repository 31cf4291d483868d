"""From a request to a route: route tables, and the per-route layers (errors, timeout, retry, authorization)."""

"""Toward the callee: clusters, load balancing, outlier ejection, circuit breakers, health checks, retries."""

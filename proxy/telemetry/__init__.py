"""What the sidecar reports: golden metrics, trace context and spans, OTLP export, access logs."""

"""The sidecar's life with the control plane: first certificate, renewal, registration, app readiness."""

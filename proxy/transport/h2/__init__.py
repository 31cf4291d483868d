"""HTTP/2 in the sidecar: downstream server, multiplexed upstream client and pool, gRPC
rules (status classification, retry conditions, deadlines)."""

"""The node gateway (`gossamer gateway`): routes other nodes' mTLS connections by SNI
to this node's instances without terminating TLS (docs/architecture.md, "Several nodes")."""

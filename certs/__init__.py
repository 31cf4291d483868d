"""The mesh CA: SPIFFE identities, CSR signing, rotation and join tokens."""

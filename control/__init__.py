"""The control plane: xDS v3 server, snapshot cache, translation, identity, API."""

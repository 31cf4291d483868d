"""How a registry change becomes the next registry state (pure).

`apply_event` folds one registry Event into a RegistryState; the registry link
(`registry_link.py`) applies each change of the store's watch with it. A RESYNC event
replaces the state wholesale, so a watcher that fell behind never serves a gap.
"""

from __future__ import annotations

import logging

from gossamer.discovery.model import STATIC_OWNER, Event, EventKind, RegistryState

log = logging.getLogger("gossamer.control.sources")


def apply_event(state: RegistryState, change: Event) -> RegistryState:
    """The state after `change` (a new object; `state` is left untouched)."""
    if change.kind is EventKind.RESYNC:
        if change.state is None:
            raise ValueError("a RESYNC event must carry the state")
        return change.state
    services = dict(state.services)
    endpoints = dict(state.endpoints)
    if change.kind is EventKind.PUT_SERVICE and change.service is not None:
        services[change.service.key] = change.service
    elif change.kind is EventKind.DELETE_SERVICE and change.key is not None:
        services.pop(change.key, None)
        for k in [
            k for k, e in endpoints.items() if k[0] == change.key and e.owner == STATIC_OWNER
        ]:
            del endpoints[k]
    elif change.kind is EventKind.PUT_ENDPOINT and change.endpoint is not None:
        endpoints[(change.endpoint.service, change.endpoint.instance_id)] = change.endpoint
    elif change.kind is EventKind.DELETE_ENDPOINT and change.key is not None:
        endpoints.pop((change.key, change.instance_id or ""), None)
    else:
        raise ValueError(f"malformed registry event {change!r}")
    return RegistryState(max(state.revision, change.revision), services, endpoints)

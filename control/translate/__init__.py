"""Translation from the registry, the mesh policies and the trust bundle to Envoy xDS v3
resources: pure functions over plain data (docs/architecture.md, "The control loop").

`Translator(MeshInputs(...)).view(NodeGroup(...))` gives one group's resources by type
URL and name; the modules below build each kind of resource.

The names are loaded on first use (PEP 562), so that importing one translation module
does not load every other with its protobufs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .views import PROXYLESS, GroupResources, MeshInputs, NodeGroup, Translator

__all__ = ["PROXYLESS", "GroupResources", "MeshInputs", "NodeGroup", "Translator"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import views

        return getattr(views, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""Translation from the registry, the mesh policies and the trust bundle to Envoy xDS v3
resources: pure functions over plain data (DESIGN.md section 3 and 5).

`Translator(MeshInputs(...)).view(NodeGroup(...))` gives one group's resources by type
URL and name; the modules below build each kind of resource.
"""

from .views import PROXYLESS, GroupResources, MeshInputs, NodeGroup, Translator

__all__ = ["PROXYLESS", "GroupResources", "MeshInputs", "NodeGroup", "Translator"]

"""`gossamer up`: the demo mesh run locally as processes, without Docker.

Modules: `layout` (who runs where, on which ports: pure), `demo_mesh_yaml` (the control
plane's mesh.yaml: pure), `statedir` (the fresh state directory: CA, join tokens,
files), `commands` (each process's command line: pure), `netns` (`--isolate`:
namespaces, veths, bridge), `probes` (readiness and the request through the mesh),
`summary` (the live lines), `runner` (start, wait, watch, stop).
"""

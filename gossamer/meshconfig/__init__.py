"""mesh.yaml's one schema: every section and field declared once (`schema`), the types
those declarations are made of (`fields`), and the README reference generated from them
(`reference`). The parsers in control/, discovery/ and gossamer/observe/ take their key
lists, defaults and bounds from here; this package imports only gossamer.contract,
gossamer.errors and gossamer.yamlconf, so every one of them can use it."""

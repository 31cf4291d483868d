"""The demo mesh's own services: web -> catalog -> inventory, and a load generator."""

"""Register-level chip models, one module per driver name, each exporting `MODEL`."""

"""Reader threads: one per device, each owning its device's I/O."""

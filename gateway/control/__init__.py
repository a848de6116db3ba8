"""Control from MQTT: commands on `{prefix}/{output}/set` switch outputs, safely.

- `command.py`: what a `set` payload means (pure parsing and checks).
- `drivers.py`: one class per output kind, each writing and reading back its hardware.
- `control.py`: the control thread (commands, `max_on`, broker-loss fallback, start/stop
  states) and what it publishes (`state`, `result`).

docs/control.md is the user's view.
"""

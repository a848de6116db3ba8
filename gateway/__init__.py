"""edge-gateway: I2C and serial sensors to MQTT, durably, on a Raspberry Pi."""

__version__ = "0.1.0"

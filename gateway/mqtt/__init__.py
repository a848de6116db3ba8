"""MQTT delivery (paho-mqtt 2.x)."""

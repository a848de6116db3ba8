"""MQTT delivery (paho-mqtt 2.x).

`publisher` (the thread that owns the client: connect/backoff, in-flight window),
`credentials` (password, secret file modes, TLS), `paho_compat` (every use of
paho beyond its public API, behind a version check), `buffered_socket`.
"""

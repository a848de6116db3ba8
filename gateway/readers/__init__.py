"""Readers: what runs each device and hands its readings to the outbox.

`base` (context, polled device, reader thread), `i2c` (one thread per bus),
`serial` (stream and Modbus readers), `factory` (which reader for a device),
`runner` (`DeviceRunner`, the interface the daemon and watchdog use).
"""

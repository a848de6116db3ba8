"""Pure serial protocols: bytes on a line <-> records. No I/O, no threads.

- `framer`: split a byte stream into lines with a hard cap on line length.
- `nmea`: NMEA 0183 GGA/RMC/GNS/GLL/VTG/GSA sentences with checksum verification.
- `lines`: one record per line (json, csv, kv) from a microcontroller.
- `modbus`: Modbus register-map decoding and CRC-16/MODBUS (the transport is pymodbus).

`nmea`, `lines` and `modbus` end with their catalog entry (`driver: nmea`,
`lines`, `modbus_rtu`): the config model and SPEC.
"""

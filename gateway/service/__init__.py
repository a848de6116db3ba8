"""Running as a systemd service: sd_notify, the watchdog, reload on SIGHUP.

`notify` (sd_notify), `watchdog` (READY/STATUS/WATCHDOG/STOPPING), `reload`
(SIGHUP), `checks` (beyond the schema, shared with `check`), `supervised` (the
Protocols through which these see the gateway; they never import the daemon).
"""

"""Running as a systemd service: sd_notify, the watchdog, reload on SIGHUP."""

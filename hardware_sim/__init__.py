"""A hardware simulator that stands in for every sensor, port and camera.

Drivers cannot tell it from hardware: I2C chips are register-level models
behind a fake `smbus2.SMBus`, serial devices are served on real pseudo-
terminals, and the camera renders synthetic frames with known contents.
"""

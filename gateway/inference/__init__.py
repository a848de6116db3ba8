"""On-device image inference: a supervised worker process running a TFLite model.

Kept import-light on purpose: the daemon imports `supervisor` only when
`inference.enabled`, and the numpy-only helpers (`image`) are shared with the
dev-only model builder in tools/make_model.py.
"""

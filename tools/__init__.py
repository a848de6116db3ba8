"""Developer tools (run as scripts: python tools/NAME.py); importable for the tests."""

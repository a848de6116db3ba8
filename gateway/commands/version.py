from __future__ import annotations

import argparse

from gateway import __version__


def main(args: argparse.Namespace) -> int:
    print(f"edge-gateway {__version__}")
    return 0

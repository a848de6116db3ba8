"""`python -m gateway` is the `edge-gateway` command."""

import sys

from gateway.cli import main

sys.exit(main())

"""`python -m tfcodec` runs the `tfcodec` command (tfcodec/cli.py)."""

import sys

from tfcodec.cli import main

sys.exit(main())

"""python -m atp.cli: the same as atpctl."""

import sys

from atp.cli.app import main

sys.exit(main())

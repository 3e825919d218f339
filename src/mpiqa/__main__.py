"""``python -m mpiqa``: the command-line interface."""

import sys

from mpiqa.cli.main import main

sys.exit(main())

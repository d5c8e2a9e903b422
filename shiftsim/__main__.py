"""``python -m shiftsim``: the command line (see :mod:`shiftsim.cli`)."""

import sys

from shiftsim.cli import main

if __name__ == "__main__":
    sys.exit(main())

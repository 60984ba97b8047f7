"""``python -m actorstage``: the ``actorstage`` command line."""

import sys

from actorstage.cli import main

sys.exit(main())

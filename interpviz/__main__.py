"""``python -m interpviz`` runs the ``interpviz`` command; so does ``torchrun ... -m interpviz``."""

import sys

from interpviz.cli import main

sys.exit(main())

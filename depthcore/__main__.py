"""``python -m depthcore``: the ``depthcore`` command (:mod:`depthcore.cli`)."""

import sys

from depthcore.cli import main

sys.exit(main())

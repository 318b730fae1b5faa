"""``python -m skyscan.cli VERB ...``: the same as the ``skyscan`` command."""

import sys

from skyscan.cli import main

sys.exit(main())

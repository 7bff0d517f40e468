"""``python -m modzy_retrain._cli``: the command line (as the ``modzy-retrain`` script)."""

import sys

from .main import main

sys.exit(main())

"""``python -m api.cli``: the ``spectra`` command."""

import sys

from api.cli import main

sys.exit(main())

"""``python -m sfu.worker``: see :mod:`sfu.worker.process`."""

import sys

from sfu.worker.process import main

sys.exit(main())

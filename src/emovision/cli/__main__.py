"""``python -m emovision.cli``."""

import sys

from emovision.cli import main

sys.exit(main())

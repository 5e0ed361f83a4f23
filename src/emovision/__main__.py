"""``python -m emovision`` (also what ``torchrun -m emovision`` starts)."""

import sys

from emovision.cli import main

sys.exit(main())

"""``python -m neurodiff`` (also what ``torchrun -m neurodiff train`` runs)."""

import sys

from .cli import main

sys.exit(main())

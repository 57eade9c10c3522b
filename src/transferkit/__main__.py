"""``python -m transferkit`` (also what ``torchrun -m transferkit`` runs)."""

import sys

from transferkit.cli import main

sys.exit(main())

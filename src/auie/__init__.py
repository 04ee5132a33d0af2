"""AUIE, the Adaptive User Interaction Engine."""

import logging
import os

# AUIE's numpy work is small matrices (d ≤ a few hundred): a multi-threaded BLAS spends more
# time synchronising than computing (a ridge update is 5x slower with two threads here).
# Set before numpy loads; an explicit setting in the environment wins.
for _variable in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

# Alembic logs an INFO line per built-in plugin when it is imported: seven lines in every
# process that opens a store. Set before any AUIE module imports Alembic.
logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)

__version__ = "0.1.0"

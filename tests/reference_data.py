"""Where the reference implementation's released data lives (benchmarks/, seeds/, examples/).

$SCORE_DISTILL_DATA, else ../shared/data/score-official beside the repository. A module of its own (not conftest)
because some tests parametrize over its files at collection time, and another folder's conftest would shadow
``from reference_data import``.
"""

from __future__ import annotations

import os
from pathlib import Path

REFERENCE_DATA = Path(os.environ.get("SCORE_DISTILL_DATA")
                      or Path(__file__).resolve().parents[1].parent / "shared" / "data" / "score-official")
REFERENCE_MISSING = (f"reference data not found at {REFERENCE_DATA} "
                     "(set SCORE_DISTILL_DATA to the folder holding benchmarks/, seeds/ and examples/)")

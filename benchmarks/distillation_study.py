"""SCoRe against behaviour cloning across horizons and training seeds: the driver of ``score-distill compare``.

    python benchmarks/distillation_study.py --preset tiny --horizons 2,4,8 --seeds 0,1,2 --out runs/study-tiny
    python benchmarks/distillation_study.py --config benchmarks/study_cpu_v2.yaml --horizons 2,4 --seeds 0,1,2 \\
        --out runs/study-cpu --eval-n 100 --eval-seed 5000
    python benchmarks/distillation_study.py --report-only ...   # aggregate what is evaluated so far

The same as ``score-distill compare`` (:mod:`score_distill.compare.study`, where the options are described):
every arm of the comparison is a pipeline stage switched on by configuration, so this script only loops
over seeds and horizons and aggregates the records.
"""

from __future__ import annotations

import sys

from score_distill.compare.study import (  # noqa: F401  (the study's API, for scripts and tests)
    ARMS,
    METHODS,
    PAIRS,
    aggregate,
    comparisons,
    main,
    merge_runs,
    mps_cost,
    run_config,
    setup,
    targets,
)

if __name__ == "__main__":
    sys.exit(main())

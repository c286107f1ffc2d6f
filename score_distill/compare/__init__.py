"""``score-distill compare``: SCoRe against behaviour cloning at equal teacher budget and equal training compute,
over training seeds and horizons, with task-level statistics (:mod:`score_distill.compare.stats`)."""

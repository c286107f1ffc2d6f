"""Test-wide settings: never reach a model hub, no progress bars in logs."""

import os

# No test may download a model or data set; fail at once instead of retrying a hub for a minute.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("SCORE_DISTILL_PROGRESS", "0")

"""Test-wide settings: never reach a model hub, no progress bars in logs; where the reference data lives."""

import importlib.util
import os
from pathlib import Path

import pytest

# No test may download a model or data set; fail at once instead of retrying a hub for a minute.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("SCORE_DISTILL_PROGRESS", "0")


@pytest.fixture(scope="module")
def sandbox_workers() -> int:
    """Threads of the shared ``pool``; a module overrides this fixture to change it."""
    return 2


@pytest.fixture(scope="module")
def pool(sandbox_workers):
    """A real sandbox pool per test module (modules with other sandbox settings define their own ``pool``)."""
    from score_distill.sandbox import SandboxConfig, SandboxPool

    with SandboxPool(SandboxConfig(timeout_s=5), max_workers=sandbox_workers) as p:
        yield p


@pytest.fixture
def benchmark_script():
    """Import a script of benchmarks/ (not a package) by name, e.g. ``benchmark_script("data_scaling")``."""

    def load(name: str):
        path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(name, path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod

    return load


from reference_data import REFERENCE_DATA, REFERENCE_MISSING  # noqa: E402


@pytest.fixture
def reference_data() -> Path:
    """The reference data folder; skips the test, saying where it looked, when the folder is absent."""
    if not REFERENCE_DATA.is_dir():
        pytest.skip(REFERENCE_MISSING)
    return REFERENCE_DATA

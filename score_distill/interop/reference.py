"""Import (and export) the SCoRe reference implementation's data files, without losing a step.

Files (``data/score-official/examples/``):

* ``*_bc_init_trajectories.jsonl``: teacher trajectories; the plan is the top-level ``first_thought``,
  ``steps`` are the actions. Every step is a teacher step.
* ``*_mps_trajectories.jsonl``: mentored student trajectories; ``steps[0]`` (empty code) is the plan;
  ``repair_steps`` become :class:`Correction` records (``teacher_guided_step`` -> chosen,
  ``student_mistake[0]`` -> rejected, ``mistake_step_index`` -> step_index, ``correction_suggestion`` ->
  analysis / suggestion, ``is_valid`` -> valid); the final trajectory's steps that are the teacher's get
  ``origin="teacher"``.
* ``*_llamafactory.json``: sharegpt chat data, see :mod:`score_distill.interop.llamafactory`.
* ``math_mps_rl.json`` / ``math_rl_val.json``: RL items, imported as a Trajectory whose steps are the
  verified prefix and whose single Correction (when the item has one) is the key-step record.

What our records have no field for (timestamps, the raw judge output, the discarded tail of the
student's attempt, a stripped ``Thought:`` prefix, server-error steps' fields) is kept in
``trajectory.meta["reference"]``, so :func:`to_reference_record` / :func:`to_reference_rl_item` give
back the source record exactly. A malformed line raises :class:`DataError` naming file and line.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from score_distill.agent import format as fmt
from score_distill.trajectory import Correction, Step, Task, Trajectory
from score_distill.utils.jsonl import DataError, iter_json_lines, read_json_list, write_json, write_jsonl

_PREFIX = re.compile(r"^\s*(?:First[- ]?[Tt]hought(?: prefix)?|Thought)\s*:\s*")
_REF_PLAN_OBS = "None"


def _strip_prefix(text: str) -> tuple[str, str]:
    m = _PREFIX.match(text or "")
    return (text[m.end():], m.group(0)) if m else (text or "", "")


def _split_analysis(text: str) -> tuple[str, str]:
    """'Error Analysis: A\\nCorrection Suggestion: S\\nCorrection Start Step: k' -> (A, S)."""
    body = text or ""
    m = re.search(r"\n\s*Correction Suggestion:\s*", body)
    if not m:
        return re.sub(r"^\s*Error Analysis:\s*", "", body).strip(), ""
    analysis = re.sub(r"^\s*Error Analysis:\s*", "", body[: m.start()]).strip()
    rest = body[m.end():]
    rest = re.split(r"\n\s*(?:Correction Start Step|Correct Step):", rest)[0]
    return analysis, rest.strip()


def _need(obj: dict, key: str, typ: type | tuple, path: Path, line: int, where: str = "") -> Any:
    if key not in obj:
        raise DataError(path, line, f"missing field '{where}{key}'")
    if not isinstance(obj[key], typ):
        raise DataError(path, line, f"field '{where}{key}' must be {getattr(typ, '__name__', typ)}")
    return obj[key]


# --- trajectories (bc_init / mps) -------------------------------------------------------------

_STEP_KEYS = {"thought", "code", "observation", "is_finished"}


def _ref_step(raw: dict, *, plan: bool, origin: str) -> tuple[Step, dict]:
    """One reference step -> (Step, what our Step cannot hold)."""
    thought, prefix = _strip_prefix(raw.get("thought", ""))
    obs = raw.get("observation", "")
    finished = raw.get("is_finished")
    step = Step(
        kind="plan" if plan else "action",
        thought=thought,
        code=raw.get("code", ""),
        observation=obs if isinstance(obs, str) else json.dumps(obs),
        origin=origin,  # type: ignore[arg-type]
        error=raw.get("error") if isinstance(raw.get("error"), str) else None,
    )
    if finished is True:
        step.final_answer = step.observation.strip()
    extra: dict[str, Any] = {"prefix": prefix}
    if "thought" not in raw:
        extra["no_thought"] = True
    for k in ("code", "observation"):
        if k not in raw:
            extra[f"no_{k}"] = True
    if "is_finished" not in raw:
        extra["no_is_finished"] = True
    elif not isinstance(finished, bool):
        extra["is_finished"] = finished
    other = {k: v for k, v in raw.items() if k not in _STEP_KEYS}
    if other:
        extra["other"] = other
    return step, extra


def _back_step(step: Step, extra: dict | None, *, with_finished: bool = True) -> dict:
    extra = extra or {}
    out: dict[str, Any] = {}
    if not extra.get("no_thought"):
        out["thought"] = extra.get("prefix", "") + step.thought
    if not extra.get("no_code"):
        out["code"] = step.code
    if not extra.get("no_observation"):
        out["observation"] = step.observation
    if with_finished and not extra.get("no_is_finished"):
        out["is_finished"] = extra["is_finished"] if "is_finished" in extra else step.final_answer is not None
    if "other" in extra:
        other = dict(extra["other"])
        if step.error is not None and "error" in other:
            other["error"] = step.error
        out.update(other)
    return out


def _parse_context(text: str) -> list[Step]:
    """The reference's text rendering of a verified prefix ('Step 1:\\nFirst Thought: ...') -> steps.
    Used only for a correction whose prefix no longer stands in the final trajectory."""
    steps: list[Step] = []
    if not text or text.strip() == "None":
        return steps
    for block in re.split(r"(?m)^Step \d+:\n", text)[1:]:
        m = re.match(r"(?s)\s*(?:Thought:\s*)?(.*?)\nCode:\n```(?:python)?\n(.*?)\n```\nObservation: ?(.*)", block)
        if m:
            steps.append(Step(thought=_strip_prefix(m.group(1))[0].strip(), code=m.group(2),
                              observation=m.group(3).rstrip("\n")))
        else:
            steps.append(Step(kind="plan", thought=_strip_prefix(block.strip())[0]))
    return steps


def _outcome(ev: Any) -> tuple[str, float]:
    if isinstance(ev, str):
        try:
            ev = json.loads(ev)
        except json.JSONDecodeError:
            return "wrong", 0.0
    if not isinstance(ev, dict):
        return "wrong", 0.0
    ok = ev.get("is_correct", ev.get("equivalent"))
    if ok is True:
        return "correct", 1.0
    if ev.get("error_analysis") == "Not finished":
        return "unfinished", 0.0
    return "wrong", 0.0


def reference_record_to_trajectory(rec: dict, path: str | Path = "<record>", line: int = 0) -> Trajectory:
    """One line of a ``*_trajectories.jsonl`` file -> Trajectory."""
    p = Path(path)
    info = _need(rec, "original_task_info", dict, p, line)
    steps_raw = _need(rec, "steps", list, p, line)
    for key in ("id", "question"):
        _need(info, key, str, p, line, "original_task_info.")
    if "true_answer" not in info:
        raise DataError(p, line, "missing field 'original_task_info.true_answer'")
    bc = "first_thought" in rec
    origin = "teacher" if bc else "student"
    steps: list[Step] = []
    extras: list[dict] = []
    if bc:
        plan, prefix = _strip_prefix(_need(rec, "first_thought", str, p, line))
        steps.append(Step(kind="plan", thought=plan, observation=_REF_PLAN_OBS, origin="teacher"))
        extras.append({"prefix": prefix})
    for j, raw in enumerate(steps_raw):
        if not isinstance(raw, dict):
            raise DataError(p, line, f"field 'steps.{j}' must be an object")
        is_plan = not bc and j == 0 and raw.get("code", "") == ""
        try:
            s, ex = _ref_step(raw, plan=is_plan, origin=origin)
        except ValidationError as e:
            raise DataError(p, line, f"field 'steps.{j}': {e.errors()[0]['msg']}") from None
        steps.append(s)
        extras.append(ex)

    corrections: list[Correction] = []
    repairs_meta: list[dict] = []
    for j, r in enumerate(rec.get("repair_steps") or []):
        where = f"repair_steps.{j}."
        if not isinstance(r, dict):
            raise DataError(p, line, f"field 'repair_steps.{j}' must be an object")
        k = _need(r, "mistake_step_index", int, p, line, where)
        tg = _need(r, "teacher_guided_step", dict, p, line, where)
        sm = _need(r, "student_mistake", list, p, line, where)
        if not sm or not all(isinstance(x, dict) for x in sm):
            raise DataError(p, line, f"field '{where}student_mistake' must be a non-empty list of steps")
        if not 0 <= k <= len(steps):
            raise DataError(p, line, f"field '{where}mistake_step_index' = {k} is outside 0..{len(steps)}")
        is_plan = k == 0
        chosen, ch_ex = _ref_step(tg, plan=is_plan, origin="teacher")
        rejected, rj_ex = _ref_step(sm[0], plan=is_plan, origin="student")
        stands = k < len(steps) and steps[k].thought == chosen.thought and steps[k].code == chosen.code
        if stands:
            steps[k].origin = "teacher"
            prefix = [s.model_copy(deep=True) for s in steps[:k]]
        else:
            prefix = _parse_context(r.get("context_before_intervention", ""))
        analysis, suggestion = _split_analysis(r.get("correction_suggestion", ""))
        corrections.append(Correction(
            step_index=k, prefix=prefix, chosen=chosen, rejected=rejected, analysis=analysis,
            suggestion=suggestion, valid=bool(r.get("is_valid", True)),
        ))
        repairs_meta.append({
            "chosen_extra": ch_ex,
            "rejected_extra": rj_ex,
            "student_mistake_rest": sm[1:],
            "correction_suggestion": r.get("correction_suggestion"),
            "context_before_intervention": r.get("context_before_intervention"),
            "keys": list(r.keys()),
        })

    final = next((s.final_answer for s in reversed(steps) if s.final_answer is not None), None)
    ev = rec.get("evaluation_result")
    outcome, score = _outcome(ev)
    known = {"timestamp", "steps", "first_thought", "original_task_info", "evaluation_result", "is_hard_sample",
             "repair_steps"}
    meta = {
        "format": "bc_init" if bc else "mps",
        "keys": list(rec.keys()),
        "timestamp": rec.get("timestamp"),
        "evaluation_result": ev,
        "steps": extras,
        "repairs": repairs_meta,
        "task_keys": list(info.keys()),
        "other": {k: v for k, v in rec.items() if k not in known},
    }
    try:
        return Trajectory(
            id=f"{info['id']}",
            task=Task(
                id=info["id"], question=info["question"], answer=info["true_answer"], source=p.stem,
                tools=["python", "web_search", "final_answer_print"] if "search" in p.stem else
                ["python", "final_answer_print"],
                meta={k: v for k, v in info.items() if k not in ("id", "question", "true_answer")},
            ),
            steps=steps,
            final_answer=final,
            outcome=outcome,  # type: ignore[arg-type]
            score=score,
            corrections=corrections,
            hard_to_teach=bool(rec.get("is_hard_sample", False)),
            policy="teacher" if bc else "student",
            meta={"reference": meta},
        )
    except ValidationError as e:
        first = e.errors()[0]
        raise DataError(p, line, f"field '{'.'.join(map(str, first['loc']))}': {first['msg']}") from None


def _analysis_text(c: Correction) -> str:
    return (f"Error Analysis: {c.analysis}\nCorrection Suggestion: {c.suggestion}\n"
            f"Correction Start Step: {c.step_index + 1}")


def _context_text(prefix: list[Step]) -> str:
    if not prefix:
        return "None"
    parts = []
    for i, s in enumerate(prefix, start=1):
        if s.kind == "plan":
            parts.append(f"Step {i}:\nFirst Thought: {s.thought}\n")
        else:
            parts.append(f"Step {i}:\nThought: {s.thought}\nCode:\n```python\n{s.code}\n```\n"
                         f"Observation: {s.observation}\n\n\n")
    return "".join(parts)


def to_reference_record(traj: Trajectory) -> dict:
    """Trajectory -> a reference ``*_trajectories.jsonl`` record (the exact source record when the
    trajectory was imported by :func:`reference_record_to_trajectory`)."""
    ref = traj.meta.get("reference") or {}
    fmt_name = ref.get("format") or ("bc_init" if all(s.origin == "teacher" for s in traj.steps) and not
                                     traj.corrections else "mps")
    extras = ref.get("steps") or [None] * len(traj.steps)
    out: dict[str, Any] = {"timestamp": ref.get("timestamp") or ""}
    steps = list(traj.steps)
    if fmt_name == "bc_init":
        plan = steps.pop(0) if steps and steps[0].kind == "plan" else Step(kind="plan")
        out["steps"] = [_back_step(s, e) for s, e in zip(steps, extras[1:] + [None] * len(steps))]
        out["first_thought"] = ((extras[0] or {}).get("prefix", "") if extras else "") + plan.thought
    else:
        rendered = []
        for s, e in zip(steps, list(extras) + [None] * len(steps)):
            d = _back_step(s, e)
            if s.kind == "plan" and e is None:
                d["observation"] = _REF_PLAN_OBS
            rendered.append(d)
        out["steps"] = rendered
    task = {"id": traj.task.id, "question": traj.task.question, "true_answer": traj.task.answer, **traj.task.meta}
    order = ref.get("task_keys")
    out["original_task_info"] = {k: task[k] for k in order} if order else task
    if "evaluation_result" in ref:
        out["evaluation_result"] = ref["evaluation_result"]
    elif fmt_name == "bc_init":
        out["evaluation_result"] = json.dumps({"equivalent": traj.outcome == "correct"})
    else:
        out["evaluation_result"] = {"is_correct": traj.outcome == "correct",
                                    "error_analysis": "Not finished" if traj.outcome == "unfinished" else None}
    if traj.hard_to_teach or "is_hard_sample" in (ref.get("keys") or []):
        out["is_hard_sample"] = traj.hard_to_teach
    if fmt_name == "mps":
        repairs = []
        metas = ref.get("repairs") or [None] * len(traj.corrections)
        for c, m in zip(traj.corrections, metas):
            m = m or {}
            r = {
                "teacher_guided_step": _back_step(c.chosen, m.get("chosen_extra"), with_finished=False),
                "student_mistake": [_back_step(c.rejected, m.get("rejected_extra"), with_finished=False)]
                + list(m.get("student_mistake_rest") or []),
                "mistake_step_index": c.step_index,
                "correction_suggestion": m["correction_suggestion"] if "correction_suggestion" in m
                else _analysis_text(c),
                "context_before_intervention": m["context_before_intervention"] if "context_before_intervention" in m
                else _context_text(c.prefix),
                "is_valid": c.valid,
            }
            keys = m.get("keys")
            repairs.append({k: r[k] for k in keys} if keys else r)
        out["repair_steps"] = repairs
    out.update(ref.get("other") or {})
    order = ref.get("keys")
    if not order:
        return out
    return {k: out[k] for k in order if k in out} | {k: v for k, v in out.items() if k not in order}


# --- RL items ---------------------------------------------------------------------------------

def _parse_turn(text: str, *, plan: bool, origin: str = "student") -> Step:
    parsed = fmt.parse_plan(text) if plan else fmt.parse_action(text)
    thought, _ = _strip_prefix(parsed.thought)
    s = Step(kind="plan" if plan else "action", thought=thought.strip(), code=parsed.code, origin=origin,  # type: ignore[arg-type]
             format_errors=parsed.format_errors)
    s.raw = text  # exact source text; the rendering differs (tags, newlines, prefixes)
    return s


def _obs(text: str) -> str:
    return text[len(fmt.OBSERVATION_PREFIX):] if text.startswith(fmt.OBSERVATION_PREFIX) else text


def rl_item_to_trajectory(item: dict, path: str | Path = "<item>", index: int = 0) -> Trajectory:
    """One RL item -> Trajectory(steps = verified prefix, corrections = [key-step record] or [])."""
    p = Path(path)
    line = index + 1
    prompt = _need(item, "prompt", list, p, line)
    for key in ("chosen", "chosen_observation", "rejected", "rejected_observation", "gt_answer"):
        _need(item, key, str, p, line)
    if not prompt or not isinstance(prompt[0], dict) or prompt[0].get("role") != "user":
        raise DataError(p, line, "field 'prompt' must start with the user's question")
    steps: list[Step] = []
    turns = prompt[1:]
    for j in range(0, len(turns), 2):
        a = turns[j]
        if not isinstance(a, dict) or a.get("role") != "assistant" or not isinstance(a.get("content"), str):
            raise DataError(p, line, f"field 'prompt.{j + 1}' must be an assistant turn")
        s = _parse_turn(a["content"], plan=not steps)
        if j + 1 < len(turns):
            o = turns[j + 1]
            if not isinstance(o, dict) or o.get("role") != "user":
                raise DataError(p, line, f"field 'prompt.{j + 2}' must be a user (observation) turn")
            s.observation = _obs(o.get("content", ""))
        steps.append(s)
    corrections = []
    if item["chosen"]:
        is_plan = not steps
        chosen = _parse_turn(item["chosen"], plan=is_plan, origin="teacher")
        chosen.observation = _obs(item["chosen_observation"])
        rejected = _parse_turn(item["rejected"], plan=is_plan)
        rejected.observation = _obs(item["rejected_observation"])
        cs = item.get("correct_step", "")
        analysis, suggestion = _split_analysis(re.sub(r"^<thought>", "", cs))
        corrections.append(Correction(step_index=len(steps), prefix=[s.model_copy(deep=True) for s in steps],
                                      chosen=chosen, rejected=rejected, analysis=analysis, suggestion=suggestion))
    q = prompt[0].get("content", "")
    return Trajectory(
        id=f"{p.stem}-{index}",
        task=Task(id=f"{p.stem}-{index}", question=q, answer=item["gt_answer"], source=p.stem),
        steps=steps,
        corrections=corrections,
        meta={"reference": {"format": "rl_item", "item": {
            "keys": list(item.keys()),
            "correct_step": item.get("correct_step"),
            "prompt_raw": prompt,
            "chosen_observation": item["chosen_observation"],
            "rejected_observation": item["rejected_observation"],
        }}},
    )


def to_reference_rl_item(traj: Trajectory) -> dict:
    """Trajectory (prefix + at most one key-step correction) -> a reference RL item."""
    ref = ((traj.meta.get("reference") or {}).get("item")) or {}
    if "prompt_raw" in ref:
        prompt = ref["prompt_raw"]
    else:
        prompt = [{"role": "user", "content": traj.task.question}]
        for s in traj.steps:
            prompt.append({"role": "assistant", "content": s.raw or s.render()})
            prompt.append({"role": "user", "content": s.render_observation()})
    c = traj.corrections[0] if traj.corrections else None
    out = {
        "prompt": prompt,
        "chosen": (c.chosen.raw or c.chosen.render()) if c else "",
        "chosen_observation": ref.get("chosen_observation", fmt.render_observation(c.chosen.observation) if c else ""),
        "rejected": (c.rejected.raw or c.rejected.render()) if c else "",
        "rejected_observation": ref.get("rejected_observation",
                                        fmt.render_observation(c.rejected.observation) if c else ""),
        "correct_step": ref["correct_step"] if "correct_step" in ref else
        (f"<thought>{_analysis_text(c)}</thought>" if c else ""),
        "gt_answer": traj.task.answer if isinstance(traj.task.answer, str) else json.dumps(traj.task.answer),
    }
    keys = ref.get("keys")
    return {k: out[k] for k in keys} if keys else out


# --- files ------------------------------------------------------------------------------------

def load_reference_trajectories(path: str | Path) -> list[Trajectory]:
    return [reference_record_to_trajectory(obj, path, n) for n, obj in iter_json_lines(path, allow_torn_tail=False)]


def load_reference_rl_items(path: str | Path) -> list[Trajectory]:
    items = read_json_list(path)
    out = []
    for i, it in enumerate(items):
        if not isinstance(it, dict):
            raise DataError(path, None, f"item {i}: expected an object")
        out.append(rl_item_to_trajectory(it, path, i))
    return out


def load_reference(path: str | Path) -> list[Trajectory]:
    """Any reference data file, by its name."""
    name = Path(path).name
    if name.endswith("_trajectories.jsonl"):
        return load_reference_trajectories(path)
    if name.endswith("_llamafactory.json"):
        from score_distill.interop.llamafactory import load_sharegpt

        return load_sharegpt(path)
    if name.endswith(".json") and "rl" in name:
        return load_reference_rl_items(path)
    raise DataError(path, None, "not a known reference file (*_trajectories.jsonl, *_llamafactory.json, *rl*.json)")


def write_reference_trajectories(path: str | Path, trajs: list[Trajectory]) -> int:
    return write_jsonl(path, [to_reference_record(t) for t in trajs])


def write_reference_rl_items(path: str | Path, trajs: list[Trajectory]) -> None:
    write_json(path, [to_reference_rl_item(t) for t in trajs])

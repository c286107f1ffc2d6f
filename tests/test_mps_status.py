"""Typed MPS outcomes: the status enum, the failure record, and records written before it existed."""

from score_distill.stages.mps import FAILED, failure_cause, teacher_unreachable
from score_distill.stages.mps_status import Failure, MPSStatus
from score_distill.trajectory import Task, Trajectory


def _record(**meta) -> Trajectory:
    return Trajectory(task=Task(id="t", question="q", answer="1"), meta=meta)


def test_failure_record_from_reason_text():
    f = Failure.parse("locate: request failed: timeout: timed out after 60s (gave up after 3 tries)")
    assert (f.stage, f.cause, f.transient) == ("locate", "timeout", True)
    assert f.detail.startswith("locate: request failed") and f.label() == "locate: timeout"
    f = Failure.parse("locate: step index 9 out of range 0..4")
    assert (f.stage, f.cause, f.transient) == ("locate", "step index out of range 0..4", False)
    assert Failure.parse("correct: bad format: no code block").label() == "correct: bad format"
    assert Failure.parse("correct: no step").label() == "correct: no step"
    assert Failure.parse("generation failed: rate_limit: 429").label() == "generation: rate_limit"


def test_typed_record_is_read_first_and_old_records_still_read():
    typed = _record(mps_status="failed", failure="correct: the endpoint went away",
                    failure_record={"stage": "correct", "cause": "connection",
                                    "detail": "correct: the endpoint went away"})
    assert teacher_unreachable(typed) and failure_cause(typed.meta) == "correct: connection"
    # A record whose text was edited since (by hand) is read from its text.
    edited = _record(**{**typed.meta, "failure": "locate: wrong schema: missing is_correct"})
    assert not teacher_unreachable(edited) and failure_cause(edited.meta) == "locate: wrong schema"
    old = _record(mps_status="failed", failure="locate: request failed: server_error: 503")
    assert teacher_unreachable(old) and failure_cause(old.meta) == "locate: server_error"
    assert not teacher_unreachable(_record(mps_status="failed", failure="locate: wrong schema: missing is_correct"))
    assert not teacher_unreachable(_record(mps_status="exhausted"))
    assert Failure.of({}) is None


def test_status_is_an_enum_that_reads_and_writes_as_its_string():
    assert FAILED is MPSStatus.FAILED and FAILED == "failed"
    r = _record(mps_status=MPSStatus.CORRECTED)
    back = Trajectory.model_validate_json(r.model_dump_json())
    assert back.meta["mps_status"] == "corrected" and MPSStatus(back.meta["mps_status"]) is MPSStatus.CORRECTED

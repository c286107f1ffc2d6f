"""Teachers: the built-in oracle, an LLM behind any Policy, and the rollout-verified locator.

Import the concrete classes from their modules (``teachers.llm``, ``teachers.locator``,
``teachers.oracle``); this package only re-exports the protocol records, so importing it stays cheap.
"""

from score_distill.teachers.base import StepProposal, Teacher, Verdict

__all__ = ["StepProposal", "Teacher", "Verdict"]

"""Evaluate models with and without patches: toxicity, bias, harm and fluency suites."""

from ppatch.eval.report import Report
from ppatch.eval.runner import EvalSettings, System, parse_system, run_eval

__all__ = ["EvalSettings", "Report", "System", "parse_system", "run_eval"]

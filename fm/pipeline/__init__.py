"""The path of one session, and of a cohort: the input gate, ReportPipeline (load, gate, segment,
measure, report), the language model's narrative, report folders and cohorts."""

from fm._moved import forward_old_names

__getattr__ = forward_old_names(
    __name__
)  # fm.pipeline was a module before the subpackages: from fm.pipeline import ReportPipeline

"""The embedded runtime: sources -> engine -> store, with checkpoints and back-pressure.

* :func:`step` -- the one micro-batch step (validate, engine, alerts, commit) every
  driver runs (:mod:`chargetracker.runtime.step`);
* :class:`Pipeline` -- one batch in, one atomic commit (results + engine state + position);
* :class:`Runner` -- polls sources in micro-batches through a bounded queue into a pipeline,
  resumes from the committed positions, stops gracefully, prunes old raw data;
* :func:`load_pipeline_config` -- the ``chargetracker run --config`` file.
"""

from __future__ import annotations

from .config import PipelineConfig, load_pipeline_config, pipeline_config_from_mapping
from .pipeline import IngestResult, Pipeline
from .runner import RUNNER_KEY, Runner, RunStats, Snapshot, print_summary
from .step import AlertPolicy, StepContext, step

__all__ = [
    "AlertPolicy",
    "IngestResult",
    "Pipeline",
    "PipelineConfig",
    "RUNNER_KEY",
    "RunStats",
    "Runner",
    "Snapshot",
    "StepContext",
    "load_pipeline_config",
    "pipeline_config_from_mapping",
    "print_summary",
    "step",
]

"""Stages shared by the run functions (:func:`~transferkit.transfer`, :func:`~transferkit.adapt`,
:func:`~transferkit.pretrain`) and open to benchmarks and users: the split every run records and
how a run's held-out part is rebuilt from it (:mod:`~transferkit.pipeline.splits`), the training
tensors and the finished run (:mod:`~transferkit.pipeline.stages`). The stages
of each run function are public modules: :mod:`transferkit.pipeline.transfer` (``resolve -> prepare ->
record -> train -> assess -> finish``) and :mod:`transferkit.pipeline.pretrain` (``prepare -> record ->
train``); a benchmark that needs a run's data, split or shots calls them instead of copying them.

This package sits below :mod:`transferkit.api` and :mod:`transferkit.adaptation.api`, so neither
run module imports the other.
"""

from __future__ import annotations

from transferkit.pipeline.splits import (
    SPLIT,
    TARGET_SPLIT,
    data_identity,
    heldout_split,
    heldout_target,
    own_data,
    same_data,
    unlabelled_split,
)
from transferkit.pipeline.stages import RunResult, finish_run, labelled_tensors, phase_summary

__all__ = ["SPLIT", "TARGET_SPLIT", "RunResult", "data_identity", "finish_run", "heldout_split", "heldout_target",
           "labelled_tensors", "own_data", "phase_summary", "same_data",
           "unlabelled_split"]

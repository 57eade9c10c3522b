"""Transferability scores: how well a frozen source model should transfer to labelled target data.

Each score is a pure function on NumPy arrays in its own module; :data:`SCORES` registers them
with what they need (backbone features ``[N, D]`` or source-class probabilities ``[N, C_s]``).
:func:`rank` scores several candidate models on one target set with one forward pass each.
:func:`rank` loads torch and the data layer on first call, so importing this package stays cheap.
Each function here shadows its module of the same name (``logme``, ``rank`` ...); reach a module
as ``importlib.import_module("transferkit.transferability.rank")``.
"""

from __future__ import annotations

from transferkit.transferability.base import Score
from transferkit.transferability.gbc import gbc
from transferkit.transferability.hscore import hscore, ledoit_wolf
from transferkit.transferability.knn import knn
from transferkit.transferability.leep import leep
from transferkit.transferability.linear_probe import linear_probe_cv
from transferkit.transferability.logme import logme, logme_evidence
from transferkit.transferability.nce import nce
from transferkit.transferability.parc import parc
from transferkit.transferability.rank import DEFAULT_SCORES, CandidateScores, RankResult, kendall_tau, rank
from transferkit.transferability.scores import SCORES
from transferkit.transferability.sfda import sfda

__all__ = ["DEFAULT_SCORES", "SCORES", "CandidateScores", "RankResult", "Score", "gbc", "hscore", "kendall_tau",
           "knn", "ledoit_wolf", "leep", "linear_probe_cv", "logme", "logme_evidence", "nce", "parc", "rank", "sfda"]

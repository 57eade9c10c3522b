"""The transferability-score registry, :data:`SCORES`: each score function with what it needs.

:func:`~transferkit.transferability.rank.rank` looks scores up here; the package re-exports it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from transferkit.options import opt
from transferkit.registry import Registry
from transferkit.transferability.base import Score
from transferkit.transferability.gbc import gbc
from transferkit.transferability.hscore import hscore
from transferkit.transferability.knn import knn
from transferkit.transferability.leep import leep
from transferkit.transferability.linear_probe import linear_probe_cv
from transferkit.transferability.logme import logme
from transferkit.transferability.nce import nce
from transferkit.transferability.parc import parc
from transferkit.transferability.sfda import sfda


@dataclass(frozen=True)
class LogMEOptions:
    tol: float = opt(1e-7, "the fixed-point iteration of alpha and beta stops below this relative change")
    max_iter: int = opt(200, "most fixed-point iterations per class")


@dataclass(frozen=True)
class KNNOptions:
    k: int = opt(5, "neighbours that vote (leave-one-out)")
    chunk: int = opt(1024, "similarity rows computed at a time (memory; the score does not depend on it)")


@dataclass(frozen=True)
class LinearProbeCVOptions:
    folds: int = opt(3, "stratified folds (at most the smallest class's size)")
    max_iter: int = opt(100, "L-BFGS iterations per fit")
    c: float = opt(1.0, "inverse L2 strength of the logistic regression")
    seed: int = opt(0, "seed of the fold assignment")


@dataclass(frozen=True)
class SFDAOptions:
    a: float = opt(5.0, "regularisation lambda = exp(-a * sigma_max(S_W)) of the Fisher discriminant")


@dataclass(frozen=True)
class PARCOptions:
    dims: int = opt(32, "principal components the features are reduced to")


@dataclass(frozen=True)
class GBCOptions:
    gaussian: Literal["spherical", "diagonal"] = opt("spherical", "per-class covariance: spherical | diagonal")
    dims: int = opt(64, "principal components the features are reduced to")
    var_floor: float = opt(1e-4, "floor of the per-dimension variances")


#: Transferability scores by name; each entry is a :class:`Score` (``fn``, ``needs``, ``higher_is_better``).
SCORES: Registry[Score] = Registry("score")
SCORES.add("logme", Score(logme, "features", paper="You et al., ICML 2021", Options=LogMEOptions),
           "LogME: log maximum evidence of a Bayesian linear model on the features")
SCORES.add("leep", Score(leep, "probs", paper="Nguyen et al., ICML 2020"),
           "LEEP: log expected empirical prediction of the source head")
SCORES.add("nce", Score(nce, "probs", paper="Tran et al., ICCV 2019"),
           "NCE: negative conditional entropy of target labels given source argmax labels")
SCORES.add("hscore", Score(hscore, "features", paper="Bao et al., ICIP 2019; Ibrahim et al., ECML-PKDD 2022"),
           "H-score with Ledoit-Wolf shrinkage of the feature covariance")
SCORES.add("knn", Score(knn, "features", paper="Wu et al., CVPR 2018", Options=KNNOptions),
           "leave-one-out 5-NN accuracy on L2-normalised features")
SCORES.add("linear_probe_cv", Score(linear_probe_cv, "features", paper="Kornblith et al., CVPR 2019",
                                              Options=LinearProbeCVOptions),
           "3-fold cross-validated logistic-regression accuracy (slower, a proxy)")
SCORES.add("sfda", Score(sfda, "features", paper="Shao et al., ECCV 2022", Options=SFDAOptions),
           "SFDA: self-challenging Fisher discriminant analysis")
SCORES.add("parc", Score(parc, "features", paper="Bolya et al., NeurIPS 2021", Options=PARCOptions),
           "PARC: rank correlation of feature and label dissimilarity matrices")
SCORES.add("gbc", Score(gbc, "features", paper="Pandy et al., CVPR 2022", Options=GBCOptions),
           "GBC: minus the Bhattacharyya overlap of per-class Gaussians")

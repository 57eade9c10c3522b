"""The transferability-score registry, :data:`SCORES`: each score function with what it needs.

:func:`~transferkit.transferability.rank.rank` looks scores up here; the package re-exports it.
"""

from __future__ import annotations

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

#: Transferability scores by name; each entry is a :class:`Score` (``fn``, ``needs``, ``higher_is_better``).
SCORES: Registry[Score] = Registry("score")
SCORES.add("logme", Score(logme, "features", paper="You et al., ICML 2021"),
           "LogME: log maximum evidence of a Bayesian linear model on the features")
SCORES.add("leep", Score(leep, "probs", paper="Nguyen et al., ICML 2020"),
           "LEEP: log expected empirical prediction of the source head")
SCORES.add("nce", Score(nce, "probs", paper="Tran et al., ICCV 2019"),
           "NCE: negative conditional entropy of target labels given source argmax labels")
SCORES.add("hscore", Score(hscore, "features", paper="Bao et al., ICIP 2019; Ibrahim et al., ECML-PKDD 2022"),
           "H-score with Ledoit-Wolf shrinkage of the feature covariance")
SCORES.add("knn", Score(knn, "features", paper="Wu et al., CVPR 2018"),
           "leave-one-out 5-NN accuracy on L2-normalised features")
SCORES.add("linear_probe_cv", Score(linear_probe_cv, "features", paper="Kornblith et al., CVPR 2019"),
           "3-fold cross-validated logistic-regression accuracy (slower, a proxy)")
SCORES.add("sfda", Score(sfda, "features", paper="Shao et al., ECCV 2022"),
           "SFDA: self-challenging Fisher discriminant analysis")
SCORES.add("parc", Score(parc, "features", paper="Bolya et al., NeurIPS 2021"),
           "PARC: rank correlation of feature and label dissimilarity matrices")
SCORES.add("gbc", Score(gbc, "features", paper="Pandy et al., CVPR 2022"),
           "GBC: minus the Bhattacharyya overlap of per-class Gaussians")

"""NCE: the negative conditional entropy of target labels given the source model's labels."""

from __future__ import annotations

import numpy as np

from transferkit.transferability.base import check_probs


def nce(probs: np.ndarray, labels: np.ndarray) -> float:
    """Negative conditional entropy ``-H(Y | Z)`` (higher is better, at most 0).

    Tran, Nguyen & Hassner, "Transferability and Hardness of Supervised Classification Tasks",
    ICCV 2019. ``Z`` is the source label the source model assigns (``argmax`` of its probabilities,
    ties to the lower index), ``Y`` the target label; with the empirical joint
    ``P(y, z) = #{i: y_i = y, z_i = z} / N``:

        NCE = -H(Y | Z) = sum_{y, z} P(y, z) log( P(y, z) / P(z) )

    Shape:
        - probs: ``[N, C_s]`` source-class probabilities
        - labels: ``[N]`` integers (at least 2 classes)
        - returns: scalar (nats)
    """
    p, y = check_probs(probs, labels)
    z = p.argmax(axis=1)
    joint = np.zeros((int(y.max()) + 1, p.shape[1]))
    np.add.at(joint, (y, z), 1.0)
    joint /= len(y)
    pz = joint.sum(axis=0, keepdims=True)
    nz = joint > 0
    return float((joint[nz] * np.log(joint[nz] / np.broadcast_to(pz, joint.shape)[nz])).sum())

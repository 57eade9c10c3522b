"""The promises of the top-level package: every public function works from ``transferkit``,
loaded on first use (``import transferkit`` imports no torch), and ``transferkit.predict`` is
the function, also after ``transferkit.prediction`` (its module) was imported."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import transferkit
from transferkit.data import load_dataset

PUBLIC = ("pretrain", "transfer", "adapt", "federate", "evaluate", "predict", "rank", "load_run")


def test_import_is_cheap_and_lists_the_api() -> None:
    code = ("import sys, transferkit; heavy = {'torch', 'flwr', 'transformers'} & set(sys.modules); "
            "assert not heavy, heavy; assert set(%r) <= set(transferkit.__all__) <= set(dir(transferkit))" % (PUBLIC,))
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("name", PUBLIC)
def test_each_name_is_a_callable_of_its_module(name: str) -> None:
    fn = getattr(transferkit, name)
    assert callable(fn) and not isinstance(fn, type(sys)) and fn.__name__ == name
    from transferkit import __dict__ as ns  # cached after the first access

    assert ns[name] is fn


def test_the_specs_are_public_and_torch_free() -> None:
    code = ("import sys, transferkit; s = transferkit.TransferSpec(source='src', data='digits8', shots=5); "
            "assert transferkit.TransferSpec.from_dict(s.to_dict()) == s and transferkit.PretrainSpec and "
            "transferkit.SplitSpec().fractions() == {'val': 0.15, 'test': 0.3}; assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_predict_survives_importing_the_prediction_module() -> None:
    code = ("import transferkit, transferkit.prediction, sys; from transferkit.prediction import predict_to_csv; "
            "f = transferkit.predict; assert callable(f) and f.__module__ == 'transferkit.prediction', f")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'train'"):
        transferkit.train  # noqa: B018


@pytest.fixture(scope="module")
def digits_npz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ds = load_dataset("digits8")
    idx = np.concatenate([np.flatnonzero(ds.y == c)[:8] for c in range(10)])
    path = tmp_path_factory.mktemp("digits") / "digits.npz"
    np.savez(path, x=ds.x[idx], y=ds.y[idx])
    return path


def test_top_level_predict(source_run: Path, digits_npz: Path) -> None:
    rows = transferkit.predict(source_run, digits_npz)
    assert len(rows) == 80 and {"class", "probability"} <= set(rows[0])


def test_top_level_rank(source_run: Path, digits_npz: Path) -> None:
    result = transferkit.rank([source_run], str(digits_npz), scores=("logme",), max_samples=80)
    assert "logme" in result.to_table()


def test_top_level_adapt(source_run: Path, digits_npz: Path, tmp_path: Path) -> None:
    res = transferkit.adapt(source_run, "mnist5k", str(digits_npz), method="dann", out=tmp_path / "a",
                            max_source=100, iterations=2, batch_size=32, precision="fp32", progress="off")
    assert (tmp_path / "a" / "model.safetensors").exists() and res.metrics

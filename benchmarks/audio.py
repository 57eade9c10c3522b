"""Spoken digits across voices: audio_cnn pretrained on voices A, transferred to voices B.

    python benchmarks/audio.py            # writes docs/AUDIO.md and docs/audio.json (~10 min on 2 cores)
    python benchmarks/audio.py --quick    # 1 seed, smaller data, fewer epochs (~3 min); runs/audio-quick/AUDIO.md

``spoken-digits`` (``transferkit.data.audio``): A = native English male espeak-ng voices, B =
foreign-accented female voices, C = native English female voices (the milder shift, zero-shot
only). The source is pretrained here on A (seed 0); on B each strategy runs with a few shots per
class and with the whole training split, over 3 seeds (the seed also draws B's renditions and the
split). Source accuracy before/after each transfer (``source_data``) measures forgetting. Also
measured: espeak-ng synthesis time per utterance and the share of a training step spent in the
parameter-free log-mel front end. Everything goes through the public API (pretrain / transfer /
evaluate). Finished runs are kept in ``runs/audio*/results.json``, so an interrupted run resumes.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # read by torch at import

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from bench_common import Spread
from harness import Bench, Context, Store, generated_line, log

import transferkit
from transferkit.runs import RunDir
from transferkit.strategies import STRATEGIES


def settings(quick: bool) -> dict[str, Any]:
    if quick:
        return {"per_voice": 8, "epochs": 8, "seeds": [0], "shots": 5, "suffix": "-quick"}
    return {"per_voice": 20, "epochs": 12, "seeds": [0, 1, 2], "shots": 5, "suffix": ""}


def data(group: str, per_voice: int) -> str:
    return f"spoken-digits:voices={group}" + ("" if per_voice == 20 else f",per_voice={per_voice}")


def strategies() -> list[str]:
    names = ["scratch", "linear_probe", "lp_ft"]
    return names + (["lora"] if "lora" in STRATEGIES else [])


def synthesis_seconds(per_voice: int = 2) -> dict[str, float]:
    """Cold espeak-ng synthesis + post-processing of one voice (a fresh cache folder), per utterance."""
    from transferkit.data import audio

    old = os.environ.get("TRANSFERKIT_CACHE")
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["TRANSFERKIT_CACHE"] = tmp
        try:
            t0 = time.perf_counter()
            audio.voice_waveforms.__wrapped__("en+f4", 12345, per_voice, audio.SAMPLE_RATE)
            seconds = time.perf_counter() - t0
        finally:
            if old is None:
                os.environ.pop("TRANSFERKIT_CACHE", None)
            else:
                os.environ["TRANSFERKIT_CACHE"] = old
    n = 10 * per_voice
    return {"utterances": n, "seconds": seconds, "per_utterance_ms": 1000 * seconds / n}


def frontend_share(repeats: int = 7, batch: int = 64) -> dict[str, Any]:
    """Seconds of the log-mel front end (forward) against a whole audio_cnn training step on one batch."""
    from transferkit.models import ModelSpec, build_model

    model = build_model(ModelSpec("audio_cnn", (16_000,), [str(i) for i in range(10)]), seed=0)
    x, y = 0.1 * torch.randn(batch, 16_000), torch.randint(0, 10, (batch,))
    opt = torch.optim.AdamW(model.parameters())
    front = model.groups["frontend"]

    def step() -> None:
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    def frontend() -> None:
        with torch.no_grad():
            front(x)

    fronts: list[float] = []
    steps: list[float] = []
    step()  # warm-up
    frontend()
    for r in range(repeats):  # interleaved, the order alternating
        for name in (("front", "step") if r % 2 == 0 else ("step", "front")):
            t0 = time.perf_counter()
            (frontend if name == "front" else step)()
            (fronts if name == "front" else steps).append(time.perf_counter() - t0)
    share = [f / s for f, s in zip(fronts, steps, strict=True)]
    return {"batch": batch, "frontend_s": Spread.of(fronts).as_dict(), "train_step_s": Spread.of(steps).as_dict(),
            "share": Spread.of(share).as_dict()}


def run(work: Path, cfg: dict[str, Any]) -> dict[str, Any]:
    per_voice, epochs = cfg["per_voice"], cfg["epochs"]
    src_data = data("A", per_voice)
    src = work / "source"
    if RunDir(src).status() != "complete":
        log(f"pretraining audio_cnn on {src_data}")
        transferkit.pretrain(src_data, "audio_cnn", src, seed=0, epochs=epochs, progress="off", overwrite=True)
    store = Store(work / "results.json")
    if "source" not in store:
        metrics = json.loads((src / "metrics.json").read_text())
        for group in ("B", "C"):
            store.put(f"zero_shot_{group}",
                      transferkit.evaluate(src, data(group, per_voice), save=False)["target"]["accuracy"])
        store.put("source", {"accuracy": metrics["source"]["accuracy"], "seconds": metrics["train_seconds"],
                             "n_train": metrics["n_train"]})
    for shots in (cfg["shots"], None):
        for name in strategies():
            for seed in cfg["seeds"]:
                def one(name: str = name, shots: int | None = shots, seed: int = seed) -> dict[str, Any]:
                    m = transferkit.transfer(src, data("B", per_voice), strategy=name, shots=shots, seed=seed,
                                             epochs=epochs, source_data=src_data, progress="off").metrics
                    return {"accuracy": m["target"]["accuracy"], "seconds": m["train_seconds"],
                            "n_train": m["n_train"], "source_before": m["source_before"]["accuracy"],
                            "source_after": m.get("source_after", {}).get("accuracy")}

                store.cell(f"{name}|{shots or 'all'}|{seed}", one, lambda r: (
                    f"{100 * r['accuracy']:.1f}% ({r['seconds']:.1f} s"
                    + (f", source {100 * r['source_after']:.1f}%)" if r["source_after"] is not None else ")")))
    return store.done


def _ms(values: list[float], scale: float = 100.0, digits: int = 1) -> str:
    mean = statistics.fmean(values) * scale
    sd = (statistics.stdev(values) if len(values) > 1 else 0.0) * scale
    return f"{mean:.{digits}f} ± {sd:.{digits}f}"


def summarise(done: dict[str, Any], cfg: dict[str, Any]) -> dict[str, dict[str, dict[str, list[float]]]]:
    out: dict[str, dict[str, dict[str, list[float]]]] = {}
    for name in strategies():
        out[name] = {}
        for shots in (cfg["shots"], None):
            runs = [done[f"{name}|{shots or 'all'}|{s}"] for s in cfg["seeds"]]
            out[name][str(shots or "all")] = {k: [r[k] for r in runs if r[k] is not None]
                                              for k in ("accuracy", "seconds", "source_after", "n_train")}
    return out


def render(doc: dict[str, Any]) -> str:
    done, summary, cfg, extra = doc["runs"], doc["summary"], doc["settings"], doc
    command, machine = doc["command"], doc["machine"]
    k = str(cfg["shots"])
    src = done["source"]
    n_k = summary["scratch"][k]["n_train"][0]
    n_all = summary["scratch"]["all"]["n_train"][0]
    lines = [
        "# Audio: spoken digits across voices", "",
        generated_line(doc, load=False), "",
        "Data: `spoken-digits` (`transferkit.data.audio`), the words zero..nine synthesised offline by espeak-ng "
        f"({cfg['per_voice']} renditions per word and voice: random rate, pitch, pitch range, gain, offset and "
        "white noise at 0-20 dB SNR), 1 s at 16 kHz. Voices A: 6 native English male voices; B: 5 female voices "
        "of German, French, Spanish, Italian and Dutch reading the English words (accent + speaker-sex shift); "
        "C: 5 native English female voices (speaker-sex shift only).", "",
        f"Model: `audio_cnn` (log-mel front end inside the model, 4 temporal conv blocks with BatchNorm, fc), "
        f"pretrained on A (seed 0, {cfg['epochs']} epochs, {src['n_train']} training clips): "
        f"**{100 * src['accuracy']:.1f}%** on A's test split. Zero-shot (A's head, no target training): "
        f"**{100 * done['zero_shot_B']:.1f}%** on B, {100 * done['zero_shot_C']:.1f}% on C (chance 10%).", "",
        f"## Transfer A -> B (B test split, mean ± std over seeds {cfg['seeds']})", "",
        f"`{k}-shot`: {k} labelled clips per class ({n_k} in all); `all`: the whole training split ({n_all} clips). "
        f"Each seed draws B's renditions, the split and the shots. At most {cfg['epochs']} epochs per phase "
        "(early stopping on the validation split); other options are the library defaults. "
        "Source after: accuracy on A's test split through the kept source head after the transfer "
        "(before: the source's own, above; a drop is forgetting).", "",
        f"| strategy | {k}-shot acc (%) | all acc (%) | source after, {k}-shot (%) | source after, all (%) "
        f"| train s, {k}-shot | train s, all |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, by in summary.items():
        cells = [_ms(by[k]["accuracy"]), _ms(by["all"]["accuracy"]),
                 _ms(by[k]["source_after"]) if by[k]["source_after"] else "n/a (new model)",
                 _ms(by["all"]["source_after"]) if by["all"]["source_after"] else "n/a (new model)",
                 _ms(by[k]["seconds"], 1, 1), _ms(by["all"]["seconds"], 1, 1)]
        lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
    lines += ["", "Gain of each transfer strategy over scratch (points, mean over seeds):", ""]
    for shots in (k, "all"):
        base = statistics.fmean(summary["scratch"][shots]["accuracy"])
        gains = ", ".join(f"`{n}` {100 * (statistics.fmean(by[shots]['accuracy']) - base):+.1f}"
                          for n, by in summary.items() if n != "scratch")
        lines.append(f"- {shots}{'-shot' if shots != 'all' else ''}: {gains}")
    if "lora" not in summary:
        lines += ["", "`lora` was not registered when this ran, so it is absent."]
    fs, syn = extra["frontend"], extra["synthesis"]
    share = Spread.from_dict(fs["share"])
    lines += [
        "", "## Costs", "",
        f"- espeak-ng synthesis (one voice, cold cache, one child process, incl. resampling and noise): "
        f"{syn['per_utterance_ms']:.0f} ms per utterance ({syn['utterances']} utterances in {syn['seconds']:.1f} s). "
        "Waveforms are cached on disk per voice, seed and size, so only the first load pays this.",
        f"- Log-mel front end: {1000 * fs['frontend_s']['median']:.0f} ms per batch of {fs['batch']} (forward) against "
        f"{1000 * fs['train_step_s']['median']:.0f} ms for a whole training step: {100 * share.median:.0f}% "
        f"[{100 * share.lo:.0f}-{100 * share.hi:.0f}] of a fine-tuning step ({share.n} interleaved repeats). "
        "Linear probing computes it once per clip through the feature cache; fine-tuning recomputes it each epoch.",
        f"- Wall time of this benchmark: {extra['wall_seconds'] / 60:.1f} min (load average at start "
        f"{machine['load_average_start'][0]:.1f}).", "",
        "Reproduce: `" + command + "` (results of finished runs are kept under `runs/audio"
        + cfg["suffix"] + "/`; delete it to start over).",
    ]
    return "\n".join(lines) + "\n"


def measure(ctx: Context) -> dict[str, Any]:
    cfg = {**settings(ctx.quick), "seeds": ctx.seeds}
    ctx.work.mkdir(parents=True, exist_ok=True)
    extra: dict[str, Any] = {"synthesis": synthesis_seconds(), "frontend": frontend_share()}
    done = run(ctx.work, cfg)
    return {"settings": cfg, "strategies": strategies(), "summary": summarise(done, cfg), "runs": done, **extra,
            "wall_seconds": time.perf_counter() - ctx.started}


BENCH = Bench("audio", __doc__ or "", measure, render, quick="1 seed, 8 renditions per voice, 8 epochs (~3 min)")
main = BENCH.main


if __name__ == "__main__":
    sys.exit(main())

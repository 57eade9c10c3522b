"""What benchmarks/text.py measures: its domains, targets, strategy recipes, the rows fixed before their
seeds ran, and the names of the post-hoc rows (shared by the runner, text.py, and its report, text_report.py)."""

from __future__ import annotations

from typing import Any

DOMAINS = ("movies", "tweets", "amazon")
SPAM = "sms-spam"  # a second task in the pair table: in-domain only (ham / spam)
REFERENCE = {"linear_probe": 0.717, "full": 0.721, "lora": 0.715, "zero_shot 'a {} review'": 0.646}
TARGET = 0.75
#: the prompt ensemble with the highest mean zero-shot accuracy on the three movies validation draws among
#: TEMPLATE_CANDIDATES (``--pick-templates`` prints them; no test set is read)
ZS_ENSEMBLE = ("{} sentiment", "the sentiment is {}", "a {} review")
#: strategy -> (options, training overrides). Fine-tuning a BERT wants lr ~3e-5 (Devlin et al. 2019);
#: the probe gets 100x that (the engine scales the head's rate by ctx.head_lr_scale).
RECIPES: dict[str, tuple[dict[str, str], dict[str, Any]]] = {
    "linear_probe": ({}, {"lr": 1e-3}),
    "lp_ft": ({"ft_lr_scale": "1"}, {"lr": 3e-5}),
    "full": ({}, {"lr": 3e-5}),
    # align (FLYP-style) fine-tuning at 0.03 x --lr, WiSE-FT alpha picked on the movies validation draw
    # (wise=-1); the prompt is the zero-shot reference prompt "a {} review" (the source is reviews)
    "zs_init": ({"templates": "a {} review", "wise": "-1", "wise_rule": "best"}, {}),
    "lora": ({}, {"lr": 1e-3}),
    # a second learning rate each for full fine-tuning and LoRA: the one with the higher mean accuracy on the
    # movies *validation* draw is the one compared in target 2 (never chosen on a test set)
    "full@5e-5": ({}, {"lr": 5e-5}),
    "lora@3e-3": ({}, {"lr": 3e-3}),
    "scratch": ({}, {"lr": 1e-4}),
    # weight-space WiSE-FT from the zero-shot model (Wortsman et al., CVPR 2022): head initialised from the
    # prompt ensemble chosen on the movies validation draws (ZS_ENSEMBLE), then LP-FT (probe pulled toward the
    # zero-shot head, then everything at 3e-5) or plain fine-tuning, then alpha on the movies validation draw
    "zs_init@lp_ft": ({"templates": ",".join(ZS_ENSEMBLE), "train": "lp_ft",
                       "wise": "-1", "wise_rule": "best"}, {}),
    "zs_init@ft": ({"templates": ",".join(ZS_ENSEMBLE), "train": "finetune",
                    "wise": "-1", "wise_rule": "best"}, {}),
    # LP-FT with a 3x smaller feature learning rate (1e-5; the probe phase unchanged at 100 x 3e-5): less
    # distortion of the pretrained features, which is what LP-FT protects (Kumar et al., ICLR 2022)
    "lp_ft@ft1e-5": ({"ft_lr_scale": str(1 / 3)}, {"lr": 3e-5}),
    # semi-supervised: the rest of the movies training split, unlabelled, pseudo-labelled by a probe + zero-shot
    # teacher (prompt ensemble ZS_ENSEMBLE, weight on the validation draw); the top quarter per class joins the 128
    # labelled snippets and the student is the lp_ft row's recipe (transferkit/strategies/semi.py)
    "self_train": ({"base": "lp_ft", "base_options": "ft_lr_scale=1", "keep": "0.25",
                    "templates": ",".join(ZS_ENSEMBLE)}, {"lr": 3e-5}),
    # two teacher/student rounds: the first student (with the zero-shot part) teaches a second, fresh one
    "self_train@r2": ({"base": "lp_ft", "base_options": "ft_lr_scale=1", "keep": "0.25", "rounds": "2",
                       "templates": ",".join(ZS_ENSEMBLE)}, {"lr": 3e-5}),
    # earlier versions (see TEXT.md): the teacher's probe the library's SGD probe phase (early-stopped on the
    # validation draw) instead of L-BFGS logistic regression, its zero-shot weight by validation NLL or accuracy
    "self_train@sgd": ({"base": "lp_ft", "base_options": "ft_lr_scale=1", "keep": "0.25", "teacher": "sgd",
                        "templates": ",".join(ZS_ENSEMBLE)}, {"lr": 3e-5}),
    "self_train@acc": ({"base": "lp_ft", "base_options": "ft_lr_scale=1", "keep": "0.25", "teacher": "sgd",
                        "teacher_weight": "accuracy", "templates": ",".join(ZS_ENSEMBLE)}, {"lr": 3e-5}),
    # unsupervised domain adaptation: the self_train row with the unlabelled pool widened to the tweets this seed
    # does not test on (about 2,900, labels dropped; none repeating a test text), pseudo-labelled in the same share as
    # the movie snippets
    # (`--unlabelled rest+vader-tweets`); fixed, with UDA_SEEDS, before any of its cells ran
    "self_train@uda": ({"base": "lp_ft", "base_options": "ft_lr_scale=1", "keep": "0.25",
                        "templates": ",".join(ZS_ENSEMBLE)}, {"lr": 3e-5}),
    # the same with unlabelled Amazon snippets instead of tweets (`--unlabelled rest+vader-amazon`): does the gain
    # carry to a deployment domain the row was not set up for? Added after self_train@uda's result, fixed with
    # its seeds (UDA_SEEDS) before any of its own cells ran
    "self_train@uda-amazon": ({"base": "lp_ft", "base_options": "ft_lr_scale=1", "keep": "0.25",
                               "templates": ",".join(ZS_ENSEMBLE)}, {"lr": 3e-5}),
}
#: what text.py trains every row with besides its RECIPES entry (TrainConfig fields; the epochs and the patience
#: come from its settings): shared with text_users.py, whose commands must reproduce them
TRAIN_FIXED: dict[str, Any] = {"batch_size": 16, "precision": "fp32"}


def head_lr_scale(row: str) -> float:
    """The head's (and the probe's) rate relative to ``lr`` that text.py trains ``row`` with: 100x when it (or its
    self_train student) is LP-FT, whose probe phase runs at 100 x lr (3e-3), else 10x."""
    options, _ = RECIPES[row]
    return 100.0 if "lp_ft" in (row.split("@")[0], options.get("base")) else 10.0


#: target 1 with unlabelled tweets (unsupervised domain adaptation: labels from movies only, no test text read):
#: the row and its six seeds were fixed before any of them ran; no other variant of it is tried on them. Its pools
#: first held 11-19 tweets per seed whose tokens repeat a test tweet (the data has repeats); those are now left out
#: and every cell was rerun (the first run's table: docs/TEXT.md as of commit b5449f8)
UDA_ROW = "self_train@uda"
#: each adaptation row and the domain whose unlabelled texts (outside that seed's test draw) join its pool
UDA_DOMAINS = {UDA_ROW: "tweets", "self_train@uda-amazon": "amazon"}
UDA_SEEDS = [0, 1, 2, 3, 4, 5]
#: the row that meets target 1 on seeds 0-2, found after trying three self_train versions against those seeds'
#: test sets; fixed here *before* seeds 3-5 ran, which then confirm it or not on fresh draws (train, validation
#: and test alike), with the rows it came from
CONFIRM_ROW = "self_train@sgd ⊕ zero-shot (1se)"
CONFIRM_METHODS = ("lp_ft", "self_train@sgd", "self_train")
CONFIRM_SEEDS = [3, 4, 5]
#: WiSE-FT weights also scored from the saved path of a zs_init cell: the 1se rule and WiSE-FT's a-priori 0.5
WISE_ROWS = {"(1se)": "1se", "(a=0.5)": 0.5}

ZS_TEMPLATES = ("a {} review",)
TEMPLATE_CANDIDATES = {
    "a {} review": ("a {} review",),
    "default": ("{}", "this is {}", "it is {}", "something {}"),
    "sentiment": ZS_ENSEMBLE,
    "opinion": ("a {} review", "a {} comment", "a {} opinion", "a {} text"),
    "statement": ("a {} review", "a {} comment", "a {} opinion", "a {} statement", "a {} post", "this is {}"),
    "feel": ("a {} review", "i feel {}", "this is {}", "a {} comment"),
    "movie": ("a {} movie review", "a {} review", "a {} review of a film"),
}

POSTHOC_BASES = ("full", "lp_ft", "lora", "zs_init", "full@5e-5", "lora@3e-3", "lp_ft@ft1e-5", "zs_init@lp_ft",
                 "zs_init@ft", "self_train", "self_train@sgd", "self_train@acc", "self_train@r2", *UDA_DOMAINS)
ENSEMBLE = "⊕ zero-shot"  # output-space WiSE: calibrated log-probabilities mixed, alpha on the movies val draw
EM = "+ EM prior [transductive]"  # Saerens et al. 2002 on the unlabelled test texts of each domain
ZSP = "+ zero-shot prior [transductive]"  # the prior the zero-shot model predicts on the unlabelled test texts

"""Every parameter a notebook or profile can set, with its default, declared once.

A notebook's ``parameters`` cell repeats the defaults of the names it uses (papermill needs a
literal cell; a test keeps the cells equal to :data:`DEFAULTS`); profiles override them; commands
build their options from them. ``mtunet.study.notebook.notebook_setup`` is the one set-up call of notebooks 02-07.
"""
from __future__ import annotations

from typing import Any, Mapping

DEFAULTS: dict[str, Any] = {
    # where things go (run_all fills these in)
    "profile": "smoke",               # results/<profile>, figures/<profile>
    "data_dir": None,                 # folder holding IDRiD/ and kaggle-eyepacs-subset/ (None: synthetic)
    "results_dir": "results/smoke",   # relative paths are relative to the project root
    "figures_dir": "figures/smoke",
    "runs_dir": "runs/smoke",         # checkpoints and caches (git-ignored)
    "external_grading_dir": None,     # an external graded set for Table 4 (the paper's SiDRP14-15)
    # data
    "synthetic": {"n_seg": 12, "n_grading": 20, "n_kaggle": 60, "size": 160, "seed": 0},
    "grade_test_fraction": 0.3,       # share of EyePACS patients held out for testing
    "split_seed": 0,
    "balance_grades": True,
    # the grading roles (mtunet.study.roles; README "Grading roles"); the defaults keep the layout
    # the synthetic generator writes, the cpu and paper profiles name the real sets
    "grading_train_sets": ["eyepacs"],   # graded sets pooled for grade_train: eyepacs, aptos2019, messidor-2
    "grading_train_per_grade": None,     # cap on grade_train images per grade (None: the balanced pool)
    "table3_set": "auto",             # Table 3's test set (paper: IDRiD-D); auto: IDRiD-D, else grade_test
    "table3_test_images": None,       # a stratified subset of that many images (None: all)
    "table4_set": "auto",             # Table 4's (paper: SiDRP14-15); auto: --external-grading-dir, else none
    "table4_test_images": None,
    # image limits of a miniature (profiles/paper-miniature.yaml): a seeded subset of each set, the
    # same images on every run (mtunet.study.subsets); None: the whole set, as the paper has it
    "seg_train_images": None,         # IDRiD-S training images (None: all 54)
    "seg_test_images": None,          # IDRiD-S test images (None: all 27)
    "grade_train_images": None,       # a stratified subset of grade_train (None: all, after the cap per grade)
    "grade_test_images": None,        # a stratified subset of grade_test (None: all held-out images)
    "lesion_size_resolutions": [128, 256, 512],
    # every training run
    "image_size": 64,                 # square input of the networks (whole images; the crop size with crops)
    "work_size": None,                # side the fundus is resampled to for crops, prediction and
                                      # scoring (None: image_size); the masks are scored at their own size
    "patch_size": None,               # training crops cut from work_size images (None: whole images)
    "lesion_share": 0.8,              # share of crops centred on a lesion pixel (the rest uniform)
    "lr_schedule": "constant",        # "constant" | "cosine" (decays to 0 over the run's steps)
    "epochs": 1,
    "batch_size": 2,
    "learning_rate": 1e-4,            # paper: 1e-5 over 50 GPU epochs (see the profile for why)
    "seeds": [0, 1],                  # one training run per seed (paper: 3 runs)
    "encoder_weights": "auto",        # imagenet if present, else HED (VGG16), else random + warning
    "steps_per_epoch": None,          # crop batches per epoch (None: as many as whole-image batches)
    "jit_compile": False,             # XLA ("auto" lets Keras decide)
    "mixed_precision": False,         # mixed_bfloat16 (GPUs; CPUs with bfloat16 units)
    "run_eagerly": False,             # no graph tracing: faster for runs of a few steps
    "augment": True,
    "seg_loss": "bce",                # segmentation term of Eq. 3 (mtunet.losses.SEGMENTATION_LOSSES)
    # training length, chosen on held-out training images (mtunet.heldout); epochs is the cap
    "heldout_images": 0,              # IDRiD-S train images held out of every segmenting run (0: none)
    "heldout_grade_images": 0,        # graded training images held out of every grader (0: none)
    "patience": 0,                    # stop this many epochs after the best held-out one (0: run to the cap)
    "grade_preprocessing": "none",    # whole-image grade inputs: "none" | "graham" (mtunet.data.pipeline)
    "grade_batches": "paired",        # multi-task on crops: "paired" (whole images skip the decoder) |
                                      # "interleaved" (mtunet.study.run_training.GRADE_BATCHES)
    "dry_run": False,                 # True: check data and parameters, build models, train nothing
    # Fig. 7
    "seed_model": "unet",             # the initial lesion segmenter of Fig. 7
    "seed_epochs": 1,
    "init_comparison": ["random", "hed-bsds500"],   # encoder initialisations to compare
    # Table 1 and the ablations
    "pseudo_ignored": ["MA", "HE"],   # lesions of the pseudo masks the loss skips (224-px sources)
    "variants": ["variant_a", "variant_b", "mtunet"],
    "alpha_values": [0.1, 0.5, 1.0, 2.0, 5.0],
    "seg_losses": ["bce", "dice", "generalized_dice"],
    "ablation_seeds": [0],            # the ablations are single runs of MTUnet
    "grading_test_role": "auto",      # auto: table3_test when it holds images, else grade_test
    # Table 2 and Fig. 6
    "models": ["unet", "linknet", "fpn", "deeplabv3", "mtunet"],
    "encoders": ["mtunet", "mtunet_resnet50", "mtunet_inception_v3", "mtunet_densenet121"],
    # Tables 3 and 4
    "grading_models": ["nasnet_mobile", "densenet201", "resnext101", "inception_resnet_v2"],
    "grader_image_size": 75,          # InceptionResNetV2 needs at least 75 px
    "grading_seeds": None,            # seeds of the baseline graders (None: the same as seeds)
    "grader_epochs": None,            # epochs of the baseline graders (None: the same as epochs)
    # significance
    "ttest_pairing": "images",        # "images" | "runs"
    "ttest_alternative": "greater",   # one-sided, the paper's claim (MTUnet better) | "two-sided" | "less"
}


def with_defaults(values: Mapping[str, Any]) -> dict[str, Any]:
    """DEFAULTS overridden by the known names in `values` (a notebook's namespace, a profile)."""
    return {name: values.get(name, default) for name, default in DEFAULTS.items()}

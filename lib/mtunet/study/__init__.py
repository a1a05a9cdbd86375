"""The study: one module per step of the paper's protocol, named with the paper's words.

    parameters         every notebook/profile parameter and its default, once; the notebook set-up
    roles              which images play which part (IDRiD-S train/test, graded train/test, ...)
    datasets           what the data look like (class balance, lesion sizes, sample images)
    runs               one training run: its spec, its cache under runs/, the shared context
    seed_segmenter     Fig. 7 step 1: the initial lesion segmenter (and its encoder initialisation)
    loss_selection     the segmentation loss of a profile, chosen on held-out training images
    pseudo_labelling   Fig. 7 step 2: lesion masks for the grade-only training images
    table1_variants    Table 1 (variants A, B, C) and the alpha / loss ablations
    table2_segmentation  Table 2 and Fig. 6
    tables3_4_grading  Tables 3 and 4
    significance       the paired t-tests under Table 2
    protocol           the ordered steps, for commands that run the protocol without notebooks

Notebooks and commands call these functions; each step writes its own tables under
results/<profile>/ and hands over to the next step through named files or explicit functions.
"""

"""Command-line programs: each parses its arguments and calls the library (``mtunet.study``).

    run_notebooks   run_all.sh: the notebooks in order with papermill, per profile
    gpu_protocol    Tables 1-2 and the t-test without notebooks, on a GPU host
    select_loss     a profile's segmentation loss, chosen on held-out training images
    bench           training / inference throughput and memory
    predict         masks and grades for fundus photographs with a trained run
"""

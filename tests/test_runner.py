"""The batch runner: profiles are checked before anything runs."""
from __future__ import annotations

import pytest

from mtunet.commands import notebook_estimate as estimate
from mtunet.commands import notebook_progress as display
from mtunet.commands import run_notebooks as runner
from mtunet.errors import UserError


def _profile(tmp_path, text):
    path = tmp_path / "p.yaml"
    path.write_text(text)
    return str(path)


def test_unknown_parameter_is_an_error(tmp_path, capsys):
    path = _profile(tmp_path, "parameters:\n  image_size: 64\n  imgae_size: 32\n")
    assert runner.main(["--profile", path]) == 2
    err = capsys.readouterr().err
    assert "imgae_size" in err and "declared by no notebook" in err and "p.yaml" in err


def test_override_for_a_notebook_that_does_not_declare_it(tmp_path):
    path = _profile(tmp_path, "notebooks:\n  07_significance_tests: {alpha_values: [1.0]}\n")
    profile = runner.load_profile(path)
    with pytest.raises(UserError, match="07_significance_tests does not declare"):
        runner.parameters_per_notebook(profile, runner.list_notebooks(), {})


def test_unknown_profile_names_the_known_ones():
    with pytest.raises(UserError, match="smoke"):
        runner.load_profile("no-such-profile")


def test_bad_yaml_and_bad_sections(tmp_path):
    with pytest.raises(UserError, match="unknown top-level keys"):
        runner.load_profile(_profile(tmp_path, "paramters: {}\n"))
    with pytest.raises(UserError, match="not valid YAML"):
        runner.load_profile(_profile(tmp_path, "parameters: [\n"))


def test_a_base_profile_is_applied_first(tmp_path):
    path = _profile(tmp_path, "base: paper\nparameters:\n  epochs: 1\n  seeds: [0]\n"
                              "notebooks:\n  06_grading_baselines: {grader_epochs: 1}\n")
    profile, paper = runner.load_profile(path), runner.load_profile("paper")
    assert profile["parameters"] == {**paper["parameters"], "epochs": 1, "seeds": [0]}
    assert profile["notebooks"] == {"06_grading_baselines": {"grader_epochs": 1}}
    assert profile["description"] == paper["description"]          # inherited when not given
    assert profile["bases"] == ["paper"] and profile["name"] == "p" and "base" not in profile


def test_bases_chain_by_path_and_merge_notebook_overrides(tmp_path):
    (tmp_path / "a.yaml").write_text("description: first\nparameters: {epochs: 3, seeds: [0, 1]}\n"
                                     "notebooks:\n  04_variant_ablation: {alpha_values: [1.0], seg_losses: [bce]}\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\nparameters: {epochs: 2}\n")
    (tmp_path / "c.yaml").write_text("base: b.yaml\ndescription: third\nparameters: {seeds: [5]}\n"
                                     "notebooks:\n  04_variant_ablation: {alpha_values: [2.0]}\n")
    profile = runner.load_profile(str(tmp_path / "c.yaml"))
    assert profile["parameters"] == {"epochs": 2, "seeds": [5]}
    assert profile["notebooks"]["04_variant_ablation"] == {"alpha_values": [2.0], "seg_losses": ["bce"]}
    assert profile["description"] == "third" and profile["bases"] == ["b", "a"]


def test_a_missing_or_circular_base_names_the_file(tmp_path):
    path = _profile(tmp_path, "base: no-such-profile\nparameters: {epochs: 1}\n")
    with pytest.raises(UserError, match=r"p\.yaml: base 'no-such-profile': no such profile"):
        runner.load_profile(path)
    (tmp_path / "a.yaml").write_text("base: b.yaml\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    with pytest.raises(UserError, match=r"b\.yaml: base profiles form a circle \(a\.yaml -> b\.yaml -> a\.yaml\)"):
        runner.load_profile(str(tmp_path / "a.yaml"))
    (tmp_path / "self.yaml").write_text("base: self.yaml\n")
    with pytest.raises(UserError, match="self.yaml: base profiles form a circle"):
        runner.load_profile(str(tmp_path / "self.yaml"))
    with pytest.raises(UserError, match="p.yaml: base must be a profile name"):
        runner.load_profile(_profile(tmp_path, "base: [paper]\n"))


def test_a_base_profiles_unknown_parameter_names_the_profile_run(tmp_path):
    (tmp_path / "a.yaml").write_text("parameters: {imgae_size: 3}\n")
    profile = runner.load_profile(_profile(tmp_path, "base: a.yaml\n"))
    with pytest.raises(UserError, match="p.yaml: parameter") as error:
        runner.parameters_per_notebook(profile, runner.list_notebooks(), {})
    assert "imgae_size" in str(error.value)


def test_the_miniature_is_the_paper_profile_with_a_smaller_budget():
    """Every parameter the miniature changes is a budget (or a CPU execution setting); the
    science (image size, loss, optimiser, data roles, graders) is the paper profile's."""
    mini, paper = runner.load_profile("paper-miniature"), runner.load_profile("paper")
    assert mini["bases"] == ["paper"]
    changed = {k for k in mini["parameters"] if mini["parameters"][k] != paper["parameters"].get(k)}
    budget = {"epochs", "seed_epochs", "seeds", "grading_seeds", "seg_train_images", "seg_test_images",
              "grading_train_per_grade", "grade_train_images", "grade_test_images", "table3_test_images", "table4_test_images",
              "alpha_values", "seg_losses", "encoders", "batch_size"}
    execution = {"mixed_precision", "jit_compile", "run_eagerly"}
    assert changed <= budget | execution, changed - budget - execution
    p = mini["parameters"]
    assert (p["image_size"], p["grader_image_size"], p["seg_loss"], p["learning_rate"]) == (512, 512, "bce", 1e-5)
    assert "nasnet_large" in p["grading_models"] and p["table3_set"] == "messidor-2"
    assert p["alpha_values"] == [1.0] and p["seg_losses"] == ["bce"]   # Table 1's run, reused
    assert p["seg_test_images"] >= 2                                   # a paired t-test needs two
    # run_all.sh passes its arguments to the runner: the name is accepted as it is
    args = runner.build_parser().parse_args(["--profile", "paper-miniature", "--data-dir", "../shared/data"])
    assert runner.load_profile(args.profile)["name"] == "paper-miniature"


@pytest.mark.parametrize("name", ["smoke", "cpu", "paper", "paper-miniature"])
def test_shipped_profiles_are_valid(name):
    profile = runner.load_profile(name)
    per_notebook = runner.parameters_per_notebook(profile, runner.list_notebooks(), {})
    assert set(per_notebook) == {nb.stem for nb in runner.list_notebooks()}


def test_each_notebook_gets_only_what_it_declares():
    profile = runner.load_profile("smoke")
    per_notebook = runner.parameters_per_notebook(profile, runner.list_notebooks(), {})
    assert "alpha_values" in per_notebook["04_variant_ablation"]
    assert "alpha_values" not in per_notebook["02_seed_segmentation"]


def test_select_rejects_unknown_numbers():
    with pytest.raises(UserError, match="--only 42"):
        runner.select_notebooks(runner.list_notebooks(), None, "42")


# -- progress and kernel noise (no kernel started here: tests/test_report_html.py runs one) ------

class _Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def _key(source: str) -> str:
    return runner.cell_key({"source": source, "metadata": {}})


def _cells():
    import nbformat

    v4 = nbformat.v4
    return [v4.new_markdown_cell("# 04 · Variants\n\nIntro."),
            v4.new_code_cell("import x"),
            v4.new_markdown_cell("## Table 1 — **variants** A, B and C"),
            v4.new_code_cell("train()"),
            v4.new_code_cell("show()")]


def test_progress_weights_cells_by_their_last_durations():
    import io

    clock, out = _Clock(), io.StringIO()
    history = {_key("import x"): 2.0, _key("train()"): 96.0, _key("show()"): 2.0}
    progress = runner.CellProgress("[4/7] 04", history, bar=False, out=out, clock=clock)
    progress.start(_cells())
    progress.cell_started(1)
    clock.now += 4.0                      # twice as slow as last time
    progress.cell_finished(1)
    progress.cell_started(3)
    clock.now += 48.0
    progress.stream("Epoch 1/4\n")
    progress.stream(["Epoch 2/4\n"])
    fraction, left, elapsed, over = progress.estimate()
    assert fraction == pytest.approx((2 + 24) / 100)    # the running cell: 48 s of 192 s expected
    assert left == pytest.approx(192 - 48 + 2 * 2) and not over
    text = progress.describe()
    assert "cell 2/3" in text and "Table 1 — variants A, B and C" in text and "epoch 2/4" in text
    assert "0:52 elapsed, ~2:28 left" in text
    clock.now += 300.0                    # far beyond what it took last time
    fraction, left, elapsed, over = progress.estimate()
    assert over and left == pytest.approx(2 * 2) and fraction == pytest.approx(98 / 100)
    assert "≥0:04 left" in progress.describe()
    progress.close()


def test_progress_without_history_and_plain_lines(monkeypatch):
    import io

    monkeypatch.setattr(display, "PLAIN_STEP_MIN_S", 0.0)
    clock, out = _Clock(), io.StringIO()
    progress = runner.CellProgress("[1/1] 01", bar=False, out=out, clock=clock)
    progress.start(_cells())
    assert progress.estimate()[1] is None                # no cell done, no history: unknown
    progress.cell_started(1)
    clock.now += 10.0
    progress.cell_finished(1)
    progress.cell_started(3)
    progress.stream("\rscoring at full size:  50%|█████     | 2/4 [00:01<00:01]")
    assert progress.estimate()[1] == pytest.approx(20.0)  # 10 s per cell, two cells left
    assert "scoring at full size 50%" in progress.describe()
    progress.close()
    lines = out.getvalue().splitlines()
    assert lines and all(line.startswith("  [1/1] 01 ") for line in lines)
    assert "Variants" in lines[0] and "Table 1" in lines[-1]


def test_progress_bar_redraws_one_line():
    import io

    err = io.StringIO()
    progress = runner.CellProgress("[2/7] 02", {_key("import x"): 1.0}, bar=True, err=err,
                                   clock=_Clock())
    progress.start(_cells())
    progress.cell_started(1)
    progress.close()
    drawn = err.getvalue()
    assert drawn.startswith("\r[2/7] 02 |") and "\n" not in drawn and drawn.endswith("\r\x1b[K")


def test_kernel_noise_is_only_the_known_lines():
    noise = ("WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
             "I0000 00:00:1795699813.915292    1023 port.cc:153] oneDNN custom operations are on. "
             "You may see slightly different numerical results due to floating-point round-off "
             "errors from different computation orders. To turn them off, set the environment "
             "variable `TF_ENABLE_ONEDNN_OPTS=0`.\n"
             "E0000 00:00:1795699829.906047    1054 util.cc:131] oneDNN supports DT_INT32 only on "
             "platforms with AVX-512. Falling back to the default Eigen-based implementation if "
             "present.\n")
    kept = ("E0000 00:00:1795699829.906047    1054 util.cc:99] something else failed\n"
            "WARNING:tensorflow:5 out of the last 10 calls triggered tf.function retracing.\n"
            "a line that mentions oneDNN custom operations are on. in passing\n")
    assert runner.drop_kernel_noise(noise) == ""
    assert runner.drop_kernel_noise(noise + kept + noise) == kept
    assert runner.drop_kernel_noise("partial line without a break") == "partial line without a break"


def test_cell_durations_of_an_executed_notebook(tmp_path):
    import json

    import nbformat

    nb = nbformat.v4.new_notebook(cells=_cells())
    nb.cells[1].metadata["papermill"] = {"duration": 1.5}
    nb.cells[3].metadata["papermill"] = {"duration": None}
    injected = nbformat.v4.new_code_cell("a = 1", metadata={"tags": ["injected-parameters"],
                                                            "papermill": {"duration": 0.1}})
    nb.cells.append(injected)
    path = tmp_path / "04_nb.ipynb"
    nbformat.write(nb, path)
    assert runner.cell_durations(path) == {_key("import x"): 1.5, runner.INJECTED: 0.1}
    assert runner.cell_durations(tmp_path / "missing.ipynb") == {}
    # remembered: a later run from cached training runs does not make the cell look cheap
    memory = tmp_path / "runs" / "cell_seconds.json"
    nb.cells[1].metadata["papermill"] = {"duration": 600.0}
    nbformat.write(nb, path)
    runner.remember_durations(memory, path)
    nb.cells[1].metadata["papermill"] = {"duration": 3.0}
    nbformat.write(nb, path)
    assert runner.expected_durations(path, memory)[_key("import x")] == 600.0
    runner.remember_durations(memory, path)
    assert json.loads(memory.read_text())["04_nb"][_key("import x")] == 300.0  # halves per run
    assert runner.expected_durations(path, tmp_path / "none.json")[_key("import x")] == 3.0


def test_a_batch_ends_with_a_summary_and_a_report(tmp_path, monkeypatch, capsys):
    """Notebooks 'executed' by copying them: the summary line counts what ran and what was up to
    date, and report.html is written after a batch that ran a notebook."""
    import shutil
    from pathlib import Path

    from mtunet.report.executions import read_rows

    ran = []

    def fake_execute(source, target, parameters, **kwargs):
        ran.append(Path(source).stem)
        shutil.copy(runner.project_root() / source, Path(target))

    monkeypatch.setattr(runner, "execute_notebook", fake_execute)
    monkeypatch.setattr(runner, "_update_manifest", lambda *a, **k: None)
    monkeypatch.setenv("MTUNET_RUNS_DIR", str(tmp_path / "runs"))
    root = runner.project_root()
    profile = runner.load_profile("smoke")
    per_notebook = runner.parameters_per_notebook(profile, runner.list_notebooks(), {})
    notebooks = runner.list_notebooks()[-2:]
    results = tmp_path / "results"
    (results / "executed").mkdir(parents=True)
    args = runner.build_parser().parse_args([])
    chosen = {nb.stem for nb in notebooks}
    assert runner._run_notebooks(args, profile, notebooks, chosen, per_notebook, results, root) == 0
    out = capsys.readouterr().out
    assert "2 notebook(s) run in" in out and "0 up to date" in out
    assert (results / "report.html").stat().st_size > 0 and "report: " in out
    rows = read_rows(tmp_path / "runs" / "smoke" / "executions.csv")
    assert [(r["notebook"], r["outcome"]) for r in rows] == [(nb.stem, "done") for nb in notebooks]
    assert runner._run_notebooks(args, profile, notebooks, chosen, per_notebook, results, root) == 0
    out = capsys.readouterr().out
    assert "0 notebook(s) run in" in out and "2 up to date" in out and "report: " not in out


def test_progress_reads_training_and_scoring_from_the_stream():
    import io

    progress = runner.CellProgress("[4/7] 04", bar=False, out=io.StringIO(), clock=_Clock())
    progress.start(_cells())
    progress.cell_started(3)
    assert progress.activity == "" and "Table 1 — variants A, B and C" in progress.describe()
    keras = "18/18 - 22s - 1s/step - grade_acc: 0.1143 - loss: 2.8370 - epoch_seconds: 22.1\n"
    progress.stream(keras)                                      # one-epoch runs: counted
    assert progress.activity == "1 epoch(s) trained"
    progress.stream("\rscoring at full size:  50%|█████     | 2/4 [00:00<00:00,  2.59img/s]")
    assert progress.activity == "scoring at full size 50%"
    progress.stream("\rscoring at full size: 100%|██████████| 4/4 [00:01<00:00,  3.05img/s]")
    assert progress.activity == "1 epoch(s) trained"             # scoring done: back to training
    progress.stream("Epoch 1/4\n")
    progress.stream(keras + "Epoch 2/4\n")
    progress.stream("Epoch 1/4\n")                              # a second run starts
    assert progress.activity == "run 2, epoch 1/4"
    progress.cell_finished(3)
    progress.cell_started(4)
    assert progress.activity == "" and progress.runs_started == 0
    progress.close()


def test_headings_as_plain_text():
    assert display.plain_heading("Ablation — α in L = L_B + α·L_C (Eq. 3)") == \
        "Ablation — α in L = L_B + α·L_C (Eq. 3)"
    assert display.plain_heading("**Table 1** — _variants_ `A`, [B](#b)") == "Table 1 — variants A, B"


def test_progress_bars_settle_to_their_last_line_and_warnings_stay():
    from mtunet.commands.run_notebooks import settled_progress

    bar = "scoring at full size: {:3d}%|#   | {}/4 [00:01<00:00]"
    outputs = [{"output_type": "stream", "name": "stdout", "text": "training\n"}]
    outputs += [{"output_type": "stream", "name": "stderr", "text": "\r" + bar.format(p, p // 25)}
                for p in (0, 50, 100)]
    outputs += [{"output_type": "stream", "name": "stderr", "text": ["\n", "UserWarning: real\n"]},
                {"output_type": "display_data", "data": {"text/plain": "x"}, "metadata": {}},
                {"output_type": "stream", "name": "stderr", "text": "\r" + bar.format(100, 4) + "\n"}]
    settled = settled_progress(outputs)
    assert [o.get("name", o["output_type"]) for o in settled] == ["stdout", "stdout", "stderr",
                                                                  "display_data", "stdout"]
    assert settled[1]["text"] == bar.format(100, 4) + "\n"           # only the final state
    assert settled[2]["text"] == "UserWarning: real\n"               # a real warning stays
    assert "_settled" not in settled[1]
    assert settled_progress([{"output_type": "stream", "name": "stderr", "text": "\n"}]) == []


def test_a_cell_cached_last_time_and_trained_now_does_not_blow_up_the_estimate():
    """History says the training cell took 2 s (its run was cached); now it trains for 9 min.
    The remaining cells are scaled by at most MAX_SPEED_RATIO, not by 270."""
    import io

    clock = _Clock()
    history = {_key("import x"): 2.0, _key("train()"): 2.0, _key("show()"): 100.0}
    progress = runner.CellProgress("[2/7] 02", history, bar=False, out=io.StringIO(), clock=clock)
    progress.start(_cells())
    progress.cell_started(1)
    clock.now += 540.0
    progress.cell_finished(1)
    progress.cell_started(3)
    left = progress.estimate()[1]
    assert left == pytest.approx(2 * display.MAX_SPEED_RATIO + 100 * display.MAX_SPEED_RATIO)
    progress.close()


# -- the time left knows about training (results/<profile>/training_runs.csv) --------------------

TRAINING_TABLE = """notebook,run_id,model,seed,tag,epochs,train_minutes
02,unet-seed0-aaaa,unet,0,seed_segmenter,4,7.0
04,mtunet-seed0-bbbb,mtunet,0,table1,4,16.5
04,mtunet-seed0-cccc,mtunet,0,table1,4,8.5
04,mtunet-seed0-dddd,mtunet,0,table1,4,3.0
04,variant_b-seed0-eeee,variant_b,0,table1,4,2.0
"""


def _training_runs(tmp_path):
    """A table of two notebooks' runs and a runs dir where 04's runs dddd (final.npz) and eeee
    (variant B: step2-grader/final.npz) are finished, cccc was started only and bbbb is gone
    (a cold run, or its id changed with the training code)."""
    table, runs = tmp_path / "training_runs.csv", tmp_path / "runs"
    table.write_text(TRAINING_TABLE)
    (runs / "mtunet-seed0-cccc").mkdir(parents=True)
    (runs / "mtunet-seed0-cccc" / "checkpoint.npz").write_bytes(b"")
    (runs / "mtunet-seed0-dddd").mkdir()
    (runs / "mtunet-seed0-dddd" / "final.npz").write_bytes(b"")
    (runs / "variant_b-seed0-eeee" / "step2-grader").mkdir(parents=True)
    (runs / "variant_b-seed0-eeee" / "step2-grader" / "final.npz").write_bytes(b"")
    return table, runs


def test_time_left_adds_the_training_runs_not_finished_now(tmp_path):
    table, runs = _training_runs(tmp_path)
    used = estimate.training_runs_used(table, "04_variant_ablation")
    assert used == [("mtunet-seed0-bbbb", 16.5), ("mtunet-seed0-cccc", 8.5),
                    ("mtunet-seed0-dddd", 3.0), ("variant_b-seed0-eeee", 2.0)]
    training = estimate.runs_to_train(used, runs)
    assert training.runs == (("mtunet-seed0-bbbb", 16.5), ("mtunet-seed0-cccc", 8.5))
    # last time's cells took 2 min (their runs were cached then): the training is what counts
    assert estimate.time_left(120.0, False, training) == "~25:00 left (2 runs to train)"
    assert estimate.time_left(120.0, True, training) == "~25:00 left (2 runs to train)"
    # cell times that already hold the training (last time it trained): not counted twice
    assert estimate.time_left(1800.0, False, training) == "~30:00 left (2 runs to train)"
    # a cold run: nothing on disk, every run to train
    cold = estimate.runs_to_train(used, tmp_path / "no-runs")
    assert estimate.time_left(None, False, cold) == "~30:00 left (4 runs to train)"
    # every run cached: last time's cell times, as before
    (runs / "mtunet-seed0-bbbb").mkdir()
    (runs / "mtunet-seed0-bbbb" / "final.npz").write_bytes(b"")
    (runs / "mtunet-seed0-cccc" / "final.npz").write_bytes(b"")
    cached = estimate.runs_to_train(used, runs)
    assert cached.runs == () and estimate.time_left(148.0, False, cached) == "~2:28 left"
    assert estimate.time_left(4.0, True, cached) == "≥0:04 left"
    one = estimate.runs_to_train([("mtunet-seed0-zzzz", 1.5)], runs)
    assert estimate.time_left(None, False, one) == "~1:30 left (1 run to train)"


def test_time_left_unknown_where_nothing_is_known(tmp_path):
    table, runs = _training_runs(tmp_path)
    # a notebook that trained nothing last time (no row) and has no cell times
    assert estimate.training_runs_used(table, "07_significance_tests") is None
    assert estimate.training_runs_used(tmp_path / "missing.csv", "04") is None
    assert estimate.time_left(None, False, None) == "time left unknown"
    assert estimate.time_left(30.0, False, None) == "~0:30 left"
    # runs all cached but no cell times: nothing to go by
    done = estimate.runs_to_train([("mtunet-seed0-dddd", 3.0)], runs)
    assert estimate.time_left(None, False, done) == "time left unknown"
    # run ids that cannot be checked: a table without them, or no runs dir
    (tmp_path / "odd.csv").write_text("notebook,train_minutes\n04,3.0\n")
    odd = estimate.runs_to_train(estimate.training_runs_used(tmp_path / "odd.csv", "04"), runs)
    assert not odd.checked and estimate.time_left(60.0, False, odd) == "time left unknown"
    nowhere = estimate.runs_to_train([("mtunet-seed0-dddd", 3.0)], None)
    assert estimate.time_left(60.0, False, nowhere) == "time left unknown"
    # a run to train whose minutes are not a number
    (tmp_path / "blank.csv").write_text("notebook,run_id,train_minutes\n04,new-run,\n")
    blank = estimate.runs_to_train(estimate.training_runs_used(tmp_path / "blank.csv", "04"), runs)
    assert estimate.time_left(60.0, False, blank) == "time left unknown"


def test_runs_trained_under_new_ids_count_down(tmp_path):
    """The training code changed, so did every run id: the listed runs never appear, the runs
    the notebook trains now finish under other ids; each one counts one listed run as trained."""
    import os

    _, runs = _training_runs(tmp_path)
    used = [("mtunet-seed0-old1", 10.0), ("mtunet-seed0-old2", 5.0)]
    assert len(estimate.runs_to_train(used, runs, since=0.0).runs) == 0   # 2 finished "since"
    started = 1_000_000.0
    for run in ("mtunet-seed0-dddd", "variant_b-seed0-eeee"):           # finished long before
        for path in (runs / run).rglob("final.npz"):
            os.utime(path, (started - 60, started - 60))
    assert estimate.runs_to_train(used, runs, since=started).runs == tuple(used)
    (runs / "mtunet-seed0-new1").mkdir()
    (runs / "mtunet-seed0-new1" / "final.npz").write_bytes(b"")         # trained just now
    assert estimate.runs_to_train(used, runs, since=started).runs == (("mtunet-seed0-old2", 5.0),)


def test_the_progress_line_says_how_many_runs_are_to_train(tmp_path):
    import io

    table, runs = _training_runs(tmp_path)
    clock = _Clock()
    history = {_key("import x"): 2.0, _key("train()"): 2.0, _key("show()"): 2.0}   # cached then
    progress = display.CellProgress("[4/7] 04", history, bar=False, out=io.StringIO(), clock=clock,
                                    training_runs=estimate.training_runs_used(table, "04"),
                                    runs_dir=runs, wall=lambda: 0.0)
    progress.start(_cells())
    progress.cell_started(3)
    clock.now += 60.0
    text = progress.describe()
    assert "1:00 elapsed, ~25:00 left (2 runs to train)" in text, text
    assert text.startswith("  4%")                       # 60 s of 60 s + 25 min, not 33 %
    (runs / "mtunet-seed0-cccc" / "final.npz").write_bytes(b"")   # one run finishes
    clock.now += display.TRAINING_RECHECK_S
    assert "~16:30 left (1 run to train)" in progress.describe()
    progress.close()
    # no cell times and nothing known of its training: no promise of seconds
    unknown = display.CellProgress("[1/7] 01", bar=False, out=io.StringIO(), clock=_Clock())
    unknown.start(_cells())
    unknown.cell_started(1)
    assert "0:00 elapsed, time left unknown · cell 1/3" in unknown.describe()
    unknown.close()


def test_a_finished_run_is_what_the_trainer_writes():
    from mtunet.checkpoints import FINAL_WEIGHTS

    assert estimate.FINISHED_FILES == (FINAL_WEIGHTS, f"step2-grader/{FINAL_WEIGHTS}")


def test_the_runner_modules_import_no_circle():
    """The plan, the estimate and the display know nothing of the command that uses them."""
    from mtunet import code_fingerprint as cf

    graph = cf.import_graph()
    top = "mtunet.commands.run_notebooks"
    for module in ("notebook_plan", "notebook_estimate", "notebook_progress", "notebook_execution"):
        assert top not in cf.import_closure([f"mtunet.commands.{module}"]), module
    assert "mtunet.commands.run_notebooks" not in graph["mtunet.report.html"]
    assert "mtunet.kernel_output" in graph["mtunet.report.html"]

"""The batch runner: profiles are checked before anything runs."""
from __future__ import annotations

import pytest

from mtunet import runner
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


@pytest.mark.parametrize("name", ["smoke", "cpu", "paper"])
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
        runner._select(runner.list_notebooks(), None, "42")

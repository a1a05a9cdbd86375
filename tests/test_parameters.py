"""Parameter defaults are declared once (mtunet.study.parameters.DEFAULTS): every notebook's
parameters cell repeats exactly those values, and every profile sets only known parameters."""
from __future__ import annotations

import ast

import pytest

from mtunet.commands.run_notebooks import declared_parameters, list_notebooks, load_profile
from mtunet.study.parameters import DEFAULTS, with_defaults


@pytest.mark.parametrize("notebook", list_notebooks(), ids=lambda p: p.stem)
def test_parameter_cells_repeat_the_defaults(notebook):
    declared = declared_parameters(notebook)
    assert declared, f"{notebook.name} has no parameters cell"
    for name, info in declared.items():
        assert name in DEFAULTS, f"{notebook.name}: {name} is not a study parameter"
        assert ast.literal_eval(info["default"]) == DEFAULTS[name], \
            f"{notebook.name}: {name} = {info['default']}, DEFAULTS says {DEFAULTS[name]!r}"


@pytest.mark.parametrize("profile", ["smoke", "cpu", "paper", "paper-miniature"])
def test_profiles_set_only_study_parameters(profile):
    parameters = load_profile(profile)["parameters"]
    assert set(parameters) <= set(DEFAULTS)


def test_with_defaults_takes_known_names_only():
    values = with_defaults({"image_size": 32, "not_a_parameter": 1})
    assert values["image_size"] == 32 and "not_a_parameter" not in values
    assert values["seeds"] == DEFAULTS["seeds"]


def test_notebooks_that_train_declare_every_run_parameter():
    """A run parameter a notebook does not declare would silently keep its default there, while
    the profile sets it for the others."""
    from mtunet.study.runs import RUN_PARAMETERS

    for notebook in list_notebooks():
        if "notebook_setup(" in notebook.read_text():
            missing = set(RUN_PARAMETERS) - set(declared_parameters(notebook))
            assert not missing, f"{notebook.name} does not declare {sorted(missing)}"


def test_notebook_06_hands_the_graders_cap_to_the_graders():
    """grader_epochs is declared by notebook 06 alone: a call that drops it trains every baseline
    grader to the segmenters' cap instead, silently (the cpu profile's graders cap differs)."""
    import ast
    import json

    from mtunet.config import project_root

    cells = json.loads((project_root() / "notebooks" / "06_grading_baselines.ipynb").read_text())["cells"]
    tree = ast.parse("\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code"))
    calls = {node.func.attr: node for node in ast.walk(tree)
             if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
             and node.func.attr in ("tables3_4", "histories")}
    assert set(calls) == {"tables3_4", "histories"}
    for name, call in calls.items():
        passed = [a.id for a in call.args if isinstance(a, ast.Name)] + \
                 [k.value.id for k in call.keywords if isinstance(k.value, ast.Name)]
        assert "grader_epochs" in passed, f"notebook 06 calls {name} without grader_epochs"

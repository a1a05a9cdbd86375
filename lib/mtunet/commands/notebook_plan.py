"""The runner's plan: which notebooks a batch runs, which it skips and why.

A profile (profiles/<name>.yaml) gives each notebook the papermill parameters it declares; a
parameter no notebook declares is an error. A profile with ``base: NAME`` is that profile's
parameters with its own applied on top (a miniature names only what it shrinks). Each notebook's
stamp is a digest of its source, the library's source, its parameters and the stamp of the
notebook before it (a chain: a change early
on makes every later notebook stale); the stamps of the executed copies are kept in
results/<profile>/executed/stamps.json. Nothing here runs a notebook
(:mod:`mtunet.commands.notebook_execution`) or prints (:mod:`mtunet.commands.notebook_progress`).
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import yaml

import mtunet
from mtunet.config import project_root
from mtunet.errors import UserError

NOTEBOOK_PATTERN = re.compile(r"^(\d\d)_[a-z0-9_]+\.ipynb$")
# Parameters the runner itself fills in for every notebook that declares them.
RUNNER_PARAMETERS = ("profile", "data_dir", "results_dir", "figures_dir", "runs_dir",
                     "external_grading_dir")


def notebook_dir() -> Path:
    return project_root() / "notebooks"


def profile_dir() -> Path:
    return project_root() / "profiles"


def list_notebooks(folder: Path | None = None) -> list[Path]:
    folder = folder or notebook_dir()
    return sorted(p for p in folder.glob("*.ipynb") if NOTEBOOK_PATTERN.match(p.name))


def _profile_path(name_or_path: str, relative_to: Path | None = None) -> Path:
    """profiles/<name>.yaml for a bare name; a path otherwise (a base's path: relative to the
    profile that names it)."""
    path = Path(name_or_path)
    if not path.suffix:
        return profile_dir() / f"{name_or_path}.yaml"
    if relative_to is not None and not path.is_absolute():
        return relative_to.parent / path
    return path


def _read_profile(path: Path) -> dict[str, Any]:
    """One profile file as written (no base applied), its shape checked."""
    try:
        profile = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(profile, dict):
        raise UserError(f"{path}: expected a mapping of description, parameters, notebooks")
    unknown_sections = set(profile) - {"description", "base", "parameters", "notebooks"}
    if unknown_sections:
        raise UserError(f"{path}: unknown top-level keys {sorted(unknown_sections)} "
                        "(expected description, base, parameters, notebooks)")
    for section in ("parameters", "notebooks"):
        profile[section] = profile.get(section) or {}
        if not isinstance(profile[section], dict):
            raise UserError(f"{path}: '{section}' must be a mapping")
    return profile


def _with_base(profile: dict[str, Any], path: Path, chain: tuple[Path, ...]) -> dict[str, Any]:
    """`profile` on top of the profile its `base:` names: the base's parameters and notebook
    overrides, then this file's (so a miniature states only what it shrinks)."""
    name = profile.pop("base", None)
    if name is None:
        return profile
    if not isinstance(name, str) or not name:
        raise UserError(f"{path}: base must be a profile name or a YAML path, got {name!r}")
    base_path = _profile_path(name, relative_to=path)
    if base_path.resolve() in chain:
        circle = " -> ".join(p.name for p in (*chain, base_path.resolve()))
        raise UserError(f"{path}: base profiles form a circle ({circle})")
    if not base_path.exists():
        raise UserError(f"{path}: base {name!r}: no such profile ({base_path}; known profiles: "
                        f"{_known_profiles()})")
    base = _load(base_path, chain)
    notebooks = {stem: {**(base["notebooks"].get(stem) or {}), **(own or {})}
                 for stem, own in profile["notebooks"].items()}
    return {"description": profile.get("description", base.get("description", "")),
            "parameters": {**base["parameters"], **profile["parameters"]},
            "notebooks": {**base["notebooks"], **notebooks},
            "bases": [base_path.stem, *base.get("bases", [])]}


def _load(path: Path, chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    return _with_base(_read_profile(path), path, (*chain, path.resolve()))


def _known_profiles() -> str:
    return ", ".join(sorted(p.stem for p in profile_dir().glob("*.yaml")))


def load_profile(name_or_path: str) -> dict[str, Any]:
    """Read a profile YAML by name (profiles/<name>.yaml) or path; check its shape. A profile
    with ``base: NAME`` starts from that profile's parameters and applies its own on top."""
    path = _profile_path(name_or_path)
    if not path.exists():
        raise UserError(f"{path}: no such profile (known profiles: {_known_profiles()})")
    profile = _load(path)
    profile.setdefault("bases", [])
    profile["name"] = path.stem
    profile["path"] = str(path)
    return profile


def declared_parameters(notebook: Path) -> dict[str, Any]:
    """The names (and default values as source text) of a notebook's `parameters` cell."""
    import papermill

    try:
        return papermill.inspect_notebook(str(notebook))
    except Exception as exc:  # papermill raises plain exceptions for broken notebooks
        raise UserError(f"{notebook}: cannot read its parameters cell ({exc})") from None


def parameters_per_notebook(profile: dict[str, Any], notebooks: list[Path],
                            runner_values: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Give each notebook the profile parameters it declares; unknown names are errors."""
    declared = {nb.stem: set(declared_parameters(nb)) for nb in notebooks}
    everywhere = set().union(*declared.values()) if declared else set()
    shared = dict(profile["parameters"])
    unknown = sorted(set(shared) - everywhere)
    if unknown:
        raise UserError(f"{profile['path']}: parameter(s) {unknown} are declared by no notebook "
                        f"(check the spelling; declared: {sorted(everywhere)})")
    for stem, overrides in profile["notebooks"].items():
        if stem not in declared:
            raise UserError(f"{profile['path']}: 'notebooks' names {stem!r}, which is not a notebook "
                            f"(have: {sorted(declared)})")
        bad = sorted(set(overrides or {}) - declared[stem])
        if bad:
            raise UserError(f"{profile['path']}: notebook {stem} does not declare {bad}")
    result = {}
    for nb in notebooks:
        values = {**runner_values, **shared, **(profile["notebooks"].get(nb.stem) or {})}
        result[nb.stem] = {k: v for k, v in values.items() if k in declared[nb.stem]}
    return result


def library_hash() -> str:
    digest = hashlib.sha1()
    package = Path(mtunet.__file__).parent
    for path in sorted(package.rglob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def stamp_of(notebook: Path, params: dict[str, Any], previous: str, lib: str) -> str:
    digest = hashlib.sha1()
    digest.update(notebook.read_bytes())
    digest.update(json.dumps(params, sort_keys=True, default=str).encode())
    digest.update(previous.encode())
    digest.update(lib.encode())
    return digest.hexdigest()


def select_notebooks(notebooks: list[Path], start: str | None, only: str | None) -> set[str]:
    """The stems of the notebooks --from NN / --only NN choose (all without either)."""
    numbers = [nb.name[:2] for nb in notebooks]
    for value, flag in ((start, "--from"), (only, "--only")):
        if value is not None and value.zfill(2) not in numbers:
            raise UserError(f"{flag} {value}: no notebook numbered {value.zfill(2)} (have {numbers})")
    if only is not None:
        return {nb.stem for nb in notebooks if nb.name[:2] == only.zfill(2)}
    if start is not None:
        return {nb.stem for nb in notebooks if nb.name[:2] >= start.zfill(2)}
    return {nb.stem for nb in notebooks}



def runner_values(name: str, sub: str, data_dir: str | None,
                  external_grading_dir: str | None) -> dict[str, Any]:
    """The RUNNER_PARAMETERS of a batch of profile `name` writing to results/`sub`."""
    return {
        "profile": name,
        "data_dir": data_dir,
        # relative to the repository root, so executed notebooks name no machine paths
        "results_dir": f"results/{sub}",
        "figures_dir": f"figures/{sub}",
        "runs_dir": f"runs/{name}",
        "external_grading_dir": external_grading_dir,
    }


def chained_stamps(notebooks: list[Path], per_notebook: dict[str, dict[str, Any]],
                   lib: str) -> dict[str, str]:
    """Each notebook's stamp, in order: each holds the one before it."""
    stamps, previous = {}, ""
    for nb in notebooks:
        previous = stamps[nb.stem] = stamp_of(nb, per_notebook[nb.stem], previous, lib)
    return stamps


class Stamps:
    """executed/stamps.json: the stamp each executed notebook was made with. Changes are kept
    in memory until :meth:`save`."""

    def __init__(self, path: Path):
        self.path = path
        self.values: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}

    def up_to_date(self, stem: str, stamp: str, output: Path) -> bool:
        """Whether notebook `stem`'s executed copy exists and was made with `stamp`."""
        return output.exists() and self.values.get(stem) == stamp

    def forget(self, stem: str) -> bool:
        """Drop a notebook's stamp (it is stale now); whether it had one."""
        return self.values.pop(stem, None) is not None

    def record(self, stem: str, stamp: str) -> None:
        self.values[stem] = stamp

    def save(self) -> None:
        from mtunet.files import write_text

        write_text(self.path, json.dumps(self.values, indent=2))

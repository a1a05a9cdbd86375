"""Which library code a cached result depends on, as a short hash: a cache keyed by it is never
reused by code that would not make the same result.

A training run's key (``study.runs.RunSpec.key``) holds its parameters and its data; on its own
that lets a run trained by older code be reused after the model builders, the losses, the crop
sampler or the training loop changed (a hand-bumped revision number was the earlier guard, and it
was forgotten more than once). Here the code is hashed instead:

- **What is hashed.** The modules a root module imports, directly or through others, at module
  level or inside a function (:func:`import_closure`), minus modules named in ``exclude`` (they
  are imported by training code but do not shape the weights, such as the manifest writer).
  Training runs use :data:`TRAINING_ROOTS`, cached scores :data:`SCORING_ROOTS`.
- **How.** Each module's source with comments, docstrings and blank lines removed
  (:func:`normalized_source`): editing a comment or a docstring retires nothing, editing a line
  of code retires every cached run or score whose code includes it. The text is compared, not
  Python's syntax tree, so the hash is the same on every supported Python version.

Report, figure, notebook and command code is outside the closures: changing it never retrains.
"""
from __future__ import annotations

import ast
import functools
import hashlib
import io
import tokenize
from pathlib import Path
from typing import Iterable

PACKAGE = "mtunet"
LIBRARY = Path(__file__).resolve().parent.parent          # lib/, the folder holding mtunet/

# What defines a training run: the step that trains it (data pipeline, crops, augmentation, the
# two-step variant B, the model builders, losses and training loop all follow from its imports)
# and the pseudo-labelling that turns a segmenter's predictions into the lesion masks of the
# grade-only images (the masks are data whose key holds their file names, not their pixels).
TRAINING_ROOTS = ("mtunet.study.run_training", "mtunet.pseudo_labels")
# What defines a cached score: full-resolution segmentation scoring and grading evaluation.
SCORING_ROOTS = ("mtunet.evaluate",)
# Imported by training code, but they write records beside a run instead of shaping it.
NOT_TRAINING = ("mtunet.report.manifest", "mtunet.report.tables", "mtunet.code_fingerprint")


def module_files(library: Path = LIBRARY) -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its own name)."""
    files = {}
    for path in sorted((library / PACKAGE).rglob("*.py")):
        parts = path.relative_to(library).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        files[".".join(parts)] = path
    return files


def _imported_modules(tree: ast.AST, module: str, is_package: bool, known) -> set[str]:
    """The package's modules `tree` imports, wherever the import stands (module level or inside a
    function): ``from a import b`` imports module ``a.b`` where that is one, else module ``a``."""
    package = module if is_package else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                source = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                found.add(f"{source}.{alias.name}" if f"{source}.{alias.name}" in known else source)
    return {name for name in found if name in known and name != module}


def import_graph(library: Path = LIBRARY) -> dict[str, set[str]]:
    """{module: the package's modules it imports}, drawn from the source (nothing is imported)."""
    files = module_files(library)
    return {module: _imported_modules(ast.parse(path.read_text(), filename=str(path)), module,
                                      path.name == "__init__.py", files)
            for module, path in files.items()}


def import_closure(roots: Iterable[str], exclude: Iterable[str] = (),
                   library: Path = LIBRARY) -> list[str]:
    """The modules `roots` need, themselves included, sorted; an excluded module is left out
    together with what only it imports."""
    graph, skip = import_graph(library), set(exclude)
    unknown = [root for root in roots if root not in graph]
    if unknown:
        raise ValueError(f"not modules of {PACKAGE}: {unknown}")
    seen: set[str] = set()
    todo = [root for root in roots if root not in skip]
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo.extend(sorted(graph[module] - seen - skip))
    return sorted(seen)


def _docstring_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                lines.update(range(body[0].lineno, body[0].end_lineno + 1))
    return lines


def normalized_source(text: str) -> str:
    """`text` without comments, docstrings, trailing spaces and blank lines: what it computes."""
    tree = ast.parse(text)
    docstrings = _docstring_lines(tree)
    lines = text.splitlines()
    comments = [token for token in tokenize.generate_tokens(io.StringIO(text).readline)
                if token.type == tokenize.COMMENT]
    for token in reversed(comments):              # cut each comment off its line
        row, col = token.start
        lines[row - 1] = lines[row - 1][:col]
    kept = [line.rstrip() for number, line in enumerate(lines, 1) if number not in docstrings]
    return "\n".join(line for line in kept if line.strip())


def fingerprint(modules: Iterable[str], library: Path = LIBRARY) -> str:
    """sha1 (12 hex digits) of the named modules' normalized sources, with their names."""
    files = module_files(library)
    digest = hashlib.sha1()
    for module in sorted(modules):
        digest.update(f"{module}\n".encode())
        digest.update(normalized_source(files[module].read_text()).encode())
        digest.update(b"\n\0")
    return digest.hexdigest()[:12]


def closure_fingerprint(roots: Iterable[str], exclude: Iterable[str] = NOT_TRAINING,
                        library: Path = LIBRARY) -> str:
    """The fingerprint of what `roots` import, read from the files now."""
    return fingerprint(import_closure(roots, exclude, library), library)


@functools.lru_cache(maxsize=None)
def code_fingerprint(roots: tuple[str, ...], exclude: tuple[str, ...] = NOT_TRAINING) -> str:
    """:func:`closure_fingerprint` of the installed library, computed once per process: the code
    a process imported does not change under it, whatever happens to the files meanwhile."""
    return closure_fingerprint(roots, exclude)


def training_code() -> str:
    """The fingerprint of the code that trains a run (enters every run's key)."""
    return code_fingerprint(TRAINING_ROOTS)


def scoring_code() -> str:
    """The fingerprint of the code that scores a run (enters every cached score's file name)."""
    return code_fingerprint(SCORING_ROOTS)

"""The library's shape: no import circle, no module a newcomer must scroll through, no function
over a screen or two without a reason written beside it."""
from __future__ import annotations

import ast

from mtunet import code_fingerprint as cf

MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 80
REASON = "# long:"          # on the line above a def: why this function stays in one piece


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index, low, on_stack, stack, found = {}, {}, set(), [], []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_cycle_finder_finds_a_circle_and_passes_a_tree():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b", "c"}, "b": {"c"}, "c": set()}) == []


def test_the_library_has_no_import_circle():
    """Every import counts, at module level or inside a function: a lazy import is still a
    dependency a reader must hold in mind."""
    assert _cycles(cf.import_graph()) == []


def test_no_module_is_over_the_size_a_reader_can_hold():
    long = {module: n for module, path in cf.module_files().items()
            if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES}
    assert long == {}


def test_no_function_is_long_without_a_reason_beside_it():
    long = []
    for module, path in cf.module_files().items():
        lines = path.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                first = min([node.lineno] + [d.lineno for d in node.decorator_list])
                size = node.end_lineno - node.lineno + 1
                if size > MAX_FUNCTION_LINES and REASON not in lines[first - 2]:
                    long.append(f"{module}.{node.name} ({size} lines)")
    assert long == []

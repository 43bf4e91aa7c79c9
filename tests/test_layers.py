"""The layers of the tree: every import of every project module (inside functions too) goes downwards.

    entry points (train.py, eval.py, ...), scripts/     may import anything
    training/  evaluation/       (both may run inference: validation, benchmarks, MagNet's test.py driver)
    inference/                   (drivers that run a method; never evaluation's)
    methods/                     (methods/X never imports methods/Y; others reach a method through METHODS)
    models/  dataset/
    util/                        (imports nothing from the project)
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: package -> the project packages it may import.
ALLOWED = {
    'util': set(),
    'models': {'util'},
    'dataset': {'util'},
    'methods': {'util', 'models', 'dataset'},
    'inference': {'util', 'models', 'dataset', 'methods'},
    # Metrics, benchmarks and the evaluation drivers that run a method and score it (MagNet's test.py).
    'evaluation': {'util', 'models', 'dataset', 'methods', 'inference'},
    'training': {'util', 'models', 'dataset', 'evaluation', 'methods', 'inference'},
}


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, imported module) of every import statement in the file, at any depth."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found += [(node.lineno, node.module)]
            # 'from methods import cascadepsp' imports the sub-package too
            found += [(node.lineno, f'{node.module}.{alias.name}') for alias in node.names]
    return found


def _package_edges() -> tuple[dict[str, set[str]], list[str]]:
    edges: dict[str, set[str]] = {p: set() for p in ALLOWED}
    violations = []
    for package in ALLOWED:
        for path in sorted((ROOT / package).rglob('*.py')):
            rel = path.relative_to(ROOT)
            own_method = rel.parts[1] if package == 'methods' and len(rel.parts) > 2 else None
            for line, module in _imports(path):
                top = module.split('.')[0]
                if top not in ALLOWED or top == package:
                    if top == 'methods' == package:
                        parts = module.split('.')
                        other = parts[1] if len(parts) > 1 else None
                        if own_method and other and other != own_method and (ROOT / 'methods' / other).is_dir():
                            violations.append(f'{rel}:{line} imports {module}: methods/{own_method} must not '
                                              f'import methods/{other}')
                    continue
                edges[package].add(top)
                if top not in ALLOWED[package]:
                    violations.append(f'{rel}:{line} imports {module}: {package}/ may import only '
                                      f'{", ".join(sorted(ALLOWED[package])) or "nothing from the project"}')
    return edges, violations


def test_every_import_goes_down_the_layers():
    _, violations = _package_edges()
    assert not violations, '\n'.join(violations)


def test_no_cycle_between_packages():
    edges, _ = _package_edges()
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges[node]):
            assert state.get(nxt) != 1, 'package cycle: ' + ' -> '.join(path + [nxt])
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for package in edges:
        if package not in state:
            visit(package, [package])


def test_the_checker_sees_imports_inside_functions(tmp_path):
    path = tmp_path / 'm.py'
    path.write_text('def f():\n    from inference.refiner import Refiner\n    import models.hub\n')
    assert [m for _, m in _imports(path)] == ['inference.refiner', 'inference.refiner.Refiner', 'models.hub']

"""Code digests: which source made an artifact, compared as AST so comments and formatting do not count.

The digest of a piece of code is the sha256 of its abstract syntax tree with
docstrings removed, over every module of this project it imports, followed
transitively (imports inside functions count: the tasks import their stage
code lazily). A comment, a blank line, a reflowed call or an edited docstring
leaves it unchanged; a changed constant, operator or call changes it.
"""
from __future__ import annotations

import ast
import hashlib
import importlib.util
import inspect
import sys
from pathlib import Path
from typing import Iterable

PACKAGES = ("pipeline",)  # whose modules are followed through imports
# Base classes from these packages are digested with the class that derives from them. The task
# layer is digested per class, not per module: following `from tasks.data import PrepareData`
# would make every task depend on the code of every task upstream of it, whose changes already
# reach it through the rebuilt input.
PROJECT_PACKAGES = ("pipeline", "tasks")

_cache: dict[tuple[str, int, int], tuple[str, frozenset[str]]] = {}


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return tree


def normalized_dump(nodes: Iterable[ast.AST]) -> str:
    """A canonical text of AST nodes: no positions, no docstrings, no comments."""
    return "\n".join(ast.dump(_strip_docstrings(node)) for node in nodes)


def _is_ours(name: str) -> bool:
    return name.split(".")[0] in PACKAGES


def _source_file(name: str) -> Path | None:
    """The file of one of our modules, found on disk without importing anything (imports would run code)."""
    spec = importlib.util.find_spec(name.split(".")[0])  # the top-level package only: cheap
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*name.split(".")[1:])
    for candidate in (path / "__init__.py", path.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def _module_exists(name: str) -> bool:
    return _source_file(name) is not None


def imported_modules(nodes: Iterable[ast.AST], package: str) -> set[str]:
    """Names of this project's modules imported anywhere inside ``nodes`` (``package`` resolves relative imports)."""
    found: set[str] = set()
    for root in nodes:
        for node in ast.walk(root):
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names if _is_ours(alias.name))
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
                if not _is_ours(base):
                    continue
                found.add(base)
                # `from pipeline import store` imports the submodule pipeline.store
                found.update(f"{base}.{a.name}" for a in node.names if _module_exists(f"{base}.{a.name}"))
    # a module's parent packages run first, so they are part of what it executes
    for name in list(found):
        parts = name.split(".")
        found.update(".".join(parts[:i]) for i in range(1, len(parts)))
    return found


def _module_path(name: str) -> Path:
    path = _source_file(name)
    if path is None:
        raise ImportError(f"cannot find the source of module {name}")
    return path


def module_digest(name: str) -> tuple[str, frozenset[str]]:
    """(AST digest of module ``name``, the project modules it imports)."""
    path = _module_path(name)
    stat = path.stat()
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    if key not in _cache:
        tree = ast.parse(path.read_bytes(), filename=str(path))
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps = frozenset(imported_modules([tree], package))
        _cache[key] = (hashlib.sha256(normalized_dump([tree]).encode()).hexdigest(), deps)
    return _cache[key]


def closure_digests(roots: Iterable[str]) -> dict[str, str]:
    """{module: digest} for ``roots`` and every project module they import, transitively."""
    digests: dict[str, str] = {}
    todo = sorted(set(roots))
    while todo:
        name = todo.pop()
        if name in digests:
            continue
        digests[name], deps = module_digest(name)
        todo.extend(d for d in deps if d not in digests)
    return dict(sorted(digests.items()))


def _bound_names(node: ast.AST) -> set[str]:
    """Names a top-level statement binds (imports, assignments, function and class definitions)."""
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return {(a.asname or a.name).split(".")[0] for a in node.names}
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {node.name}
    if isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        return {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
    return set()


def _used_names(nodes: Iterable[ast.AST]) -> set[str]:
    return {n.id for root in nodes for n in ast.walk(root) if isinstance(n, ast.Name)}


def class_nodes(tree: ast.Module, name: str) -> list[ast.AST]:
    """The class ``name`` and the top-level statements of its module it uses, transitively.

    A module may define several tasks; an import or helper that only another class uses
    is not part of this one's code (CleanData does not depend on what PrepareData imports).
    """
    top = {id(n): n for n in tree.body}
    chosen = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == name]
    if not chosen:
        raise ValueError(f"class {name} is not defined at the top level of its module")
    used = _used_names(chosen)
    while True:
        more = [n for n in tree.body if id(n) in top and n not in chosen and _bound_names(n) & used
                and not isinstance(n, ast.ClassDef)]
        if not more:
            break
        chosen.extend(more)
        used |= _used_names(more)
    return sorted(chosen, key=lambda n: n.lineno)


def class_code(cls: type) -> dict[str, str]:
    """{name: digest} of the code a class runs: its definition and the top-level statements of
    its module it uses, its base classes' code, and every project module these import, transitively."""
    module = sys.modules[cls.__module__]
    own = class_nodes(ast.parse(inspect.getsource(module)), cls.__name__)
    digests = {f"{cls.__module__}.{cls.__name__}": hashlib.sha256(normalized_dump(own).encode()).hexdigest()}
    digests.update(closure_digests(imported_modules(own, module.__package__ or "")))
    for base in cls.__mro__[1:]:
        if base.__module__.split(".")[0] in PROJECT_PACKAGES:
            digests.update(class_code(base))
    return dict(sorted(digests.items()))


def combined_digest(digests: dict[str, str]) -> str:
    """One sha256 over a {name: digest} map."""
    return hashlib.sha256("".join(f"{k}={v}\n" for k, v in sorted(digests.items())).encode()).hexdigest()


def changed_modules(old: dict[str, str], new: dict[str, str]) -> list[str]:
    """Names whose digest differs, appeared or disappeared between two {name: digest} maps."""
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))

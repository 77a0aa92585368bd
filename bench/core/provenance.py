"""Where a result came from: code version, the code a result depends on, stable hashes of configs.

A result key's code part (:func:`code_digest`) covers what that result depends on (DESIGN 9): the
modules that compute its numbers (:data:`COMPUTING`: kernel modules that compute, the models,
protocols, datasets, the runner and pretraining) and the method's own module with what it imports
(or a plugin's package with its version), not every file. What is hashed is each module's meaning,
not its bytes (:func:`meaning_dump`): a docstring, a comment, an annotation or an import-order edit
keeps every key, while a changed loss changes the keys of the methods that use it.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import hashlib
import importlib.util
import json
import subprocess
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

_REPO = Path(__file__).resolve().parents[2]  # bench/core/provenance.py -> the repository


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(_REPO), *args], capture_output=True, text=True, check=True, timeout=10
    ).stdout.strip()


@functools.cache
def _commit() -> str | None:
    try:
        return _git("rev-parse", "--short=12", "HEAD")
    except (OSError, subprocess.SubprocessError):
        return None


def code_version(modules: Sequence[str] | None = None) -> str:
    """Git commit of the harness, ``+dirty`` when code differs from it; else the package version.

    Recorded with every result so a number can be traced to the code that made it. With
    ``modules`` (what a result depends on, see :func:`code_digest`), only the files those modules
    depend on count, untracked ones included: a half-written method in ``methods/`` marks its own
    results dirty, not the Baseline's. Without, any tracked change marks it (untracked files
    ignored, as before).
    """
    sha = _commit()
    if sha is None:
        from bench import __version__

        return __version__
    return f"{sha}+dirty" if _dirty(tuple(modules) if modules is not None else None) else sha


@functools.cache
def _dirty(modules: tuple[str, ...] | None) -> bool:
    try:
        if modules is None:
            return bool(_git("status", "--porcelain", "--untracked-files=no"))
        files = [p.relative_to(_REPO).as_posix() for p in dependency_files(modules)]
        return bool(_git("status", "--porcelain", "--untracked-files=all", "--", *files))
    except (OSError, subprocess.SubprocessError):
        return False


#: The modules every result's numbers are computed by (DESIGN 9): the kernel modules that compute
#: (device paths, data-parallel averaging, the training loop, its schedule, typed settings), the
#: backbones, the protocols, the data, the runner (seeds, budgets, evaluation) and pretraining,
#: and the method registry (it builds every method's config). A result's own modules (the method's,
#: the protocol's, the backbone's: :func:`code_digest`) and what they import come on top. A module
#: one of these imports is listed here or in :data:`NOT_COMPUTING`; tests/bench/test_provenance.py
#: checks it, so a new helper a listed module imports cannot go unhashed unnoticed (an unlisted one
#: is hashed anyway: imports are followed into every module of the repository but those below).
COMPUTING: tuple[str, ...] = (
    "bench.core.device",
    "bench.core.distributed",
    "bench.core.loop",
    "bench.core.schedule",
    "bench.core.settings",
    "bench.models",
    "bench.models.backbones",
    "bench.models.base",
    "bench.models.exported",
    "bench.models.timm_resnet",
    "bench.models.tiny",
    "bench.protocols",
    "bench.protocols.budget",
    "bench.protocols.features",
    "bench.protocols.finetune",
    "bench.protocols.linear",
    "bench.protocols.metrics",
    "bench.protocols.pixel_classifiers",
    "bench.protocols.reference",
    "bench.protocols.registry",
    "bench.protocols.validation",
    "datasets",
    "datasets.cache",
    "datasets.classes",
    "datasets.embedded",
    "datasets.layouts",
    "datasets.loader",
    "datasets.normalise",
    "datasets.portable",
    "datasets.reader",
    "datasets.synthetic",
    "bench.harness.runner",
    "bench.harness.pretraining",
    "methods",
    "methods.health",
    "methods.registry",
)
#: Modules that computing modules import but that change no number, each with why. They are not
#: hashed and imports are not followed through them, so improving them keeps every completed cell.
NOT_COMPUTING: dict[str, str] = {
    "bench": "the package: its version string only",
    "bench.core": "the kernel package: a docstring",
    "bench.harness": "the harness package: a docstring",
    "bench.core.atomic": "writes files atomically: where bytes go, not which",
    "bench.core.errors": "error types and messages",
    "bench.core.integrity": "checks cache digests: an entry is used or rebuilt, the same numbers either way",
    "bench.core.names": "matches typed names to registered ones; the resolved name is in the key",
    "bench.core.paths": "where caches live",
    "bench.core.plugins": "finds plugins; a plugin's own code is hashed by its identity (see code_digest)",
    "bench.core.progress": "progress bars and log lines",
    "bench.core.provenance": "computes keys and versions, not numbers",
    "bench.core.roles": "table roles and column order",
    "bench.harness.claims": "which process computes a seed, not what it computes",
    "bench.harness.export": "writes weights and cards out after training",
    "bench.harness.tracking": "records to MLflow",
    "bench.harness.usefulness": "a figure beside the health gate, recorded and tagged: no weight or score",
}


def _module_of(path: Path, root: Path) -> tuple[str, bool]:
    """(dotted module name, is a package ``__init__``) of ``path`` under ``root``."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        return ".".join(parts[:-1]), True
    return ".".join(parts), False


def _file_of(module: str, root: Path) -> Path | None:
    base = root.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imports(path: Path, root: Path) -> frozenset[str]:
    """Modules ``path`` imports (lazy ones and relative ones included, ``from pkg import mod`` as
    ``pkg.mod`` too), with every package above each."""
    return _parsed(path, root)[0]


def _meaning(path: Path, root: Path) -> str:
    """A digest of what ``path`` computes: :func:`meaning_dump` of its source."""
    return _parsed(path, root)[1]


def _parsed(path: Path, root: Path) -> tuple[frozenset[str], str]:
    stat = path.stat()
    return _parsed_version(path, root, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=4096)
def _parsed_version(path: Path, root: Path, mtime_ns: int, size: int) -> tuple[frozenset[str], str]:
    """(imports, meaning digest) of ``path``, parsed once per file version (a sweep asks for every
    unit's key)."""
    tree = ast.parse(path.read_bytes(), filename=str(path))
    own, is_package = _module_of(path, root)
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = own.split(".") if is_package else own.split(".")[:-1]
                package = package[: len(package) - (node.level - 1)]
                base = ".".join([*package, *([base] if base else [])])
            if base:
                found.add(base)
                found |= {f"{base}.{alias.name}" for alias in node.names}
    with_parents = set()
    for name in found:
        parts = name.split(".")
        with_parents |= {".".join(parts[: i + 1]) for i in range(len(parts))}
    meaning = hashlib.sha256(_dump(_MeaningOnly().visit(tree)).encode()).hexdigest()
    return frozenset(with_parents), meaning


def _is_text(stmt: ast.stmt) -> bool:
    """A statement that is a bare string: a docstring (module, class, function, attribute)."""
    return (
        isinstance(stmt, ast.Expr)
        and isinstance(stmt.value, ast.Constant)
        and isinstance(stmt.value.value, str)
    )


def _is_type_checking(stmt: ast.stmt) -> bool:
    """``if TYPE_CHECKING:`` (or ``typing.TYPE_CHECKING``) without an ``else``: imports for mypy."""
    if not isinstance(stmt, ast.If) or stmt.orelse:
        return False
    test = stmt.test
    name = test.id if isinstance(test, ast.Name) else test.attr if isinstance(test, ast.Attribute) else None
    return name == "TYPE_CHECKING"


def _bound(stmt: ast.Import | ast.ImportFrom) -> list[str]:
    """The names an import statement binds (``*`` when it cannot be known)."""
    if isinstance(stmt, ast.Import):
        return [alias.asname or alias.name.partition(".")[0] for alias in stmt.names]
    return [alias.asname or alias.name for alias in stmt.names]


def _sorted_imports(run: list[ast.Import | ast.ImportFrom]) -> list[ast.stmt]:
    """A run of consecutive imports in a canonical order, when its order means nothing: every name
    bound once (``from a import x`` then ``from b import x`` keeps its order: the second wins)."""
    names = [name for stmt in run for name in _bound(stmt)]
    if "*" in names or len(names) != len(set(names)):
        return list(run)
    for stmt in run:
        stmt.names.sort(key=lambda alias: (alias.name, alias.asname or ""))
    return sorted(run, key=_dump)


class _MeaningOnly(ast.NodeTransformer):
    """Strips from a parsed module what computes nothing: docstrings and other bare strings,
    function signature and local variable annotations, ``if TYPE_CHECKING:`` blocks, and the order
    of a run of imports (see :func:`meaning_dump`). Comments and line numbers are gone with parsing
    already."""

    def __init__(self) -> None:
        self._scopes: list[str] = []  # "function" or "class", innermost last

    def generic_visit(self, node: ast.AST) -> ast.AST:
        super().generic_visit(node)
        for name in ("body", "orelse", "finalbody"):
            body = getattr(node, name, None)
            if isinstance(body, list) and body and isinstance(body[0], ast.stmt):
                setattr(node, name, self._statements(body) or ([ast.Pass()] if name == "body" else []))
        return node

    @staticmethod
    def _statements(body: list[ast.stmt]) -> list[ast.stmt]:
        kept = [s for s in body if not _is_text(s) and not _is_type_checking(s)]
        out: list[ast.stmt] = []
        run: list[ast.Import | ast.ImportFrom] = []
        for stmt in [*kept, None]:
            if isinstance(stmt, (ast.Import, ast.ImportFrom)):
                run.append(stmt)
                continue
            out += _sorted_imports(run)
            run = []
            if stmt is not None:
                out.append(stmt)
        return out

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> ast.AST:
        node.returns = None
        args = node.args
        for arg in [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]:
            if arg is not None:
                arg.annotation = None
        return self._in_scope("function", node)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_ClassDef(self, node: ast.ClassDef) -> ast.AST:
        return self._in_scope("class", node)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> ast.AST:
        """A local variable's annotation is never evaluated (PEP 526): ``x: int = v`` means
        ``x = v``, and ``x: int`` alone (it still makes ``x`` local) one placeholder for any type.
        A class's or module's annotations are kept (they are evaluated, and a dataclass field's
        type casts settings)."""
        self.generic_visit(node)
        if not self._scopes or self._scopes[-1] != "function":
            return node
        if node.value is not None:
            return ast.Assign(targets=[node.target], value=node.value)
        node.annotation = ast.Constant(value=None)
        return node

    def _in_scope(self, scope: str, node: ast.AST) -> ast.AST:
        self._scopes.append(scope)
        try:
            return self.generic_visit(node)
        finally:
            self._scopes.pop()


def meaning_dump(source: str | bytes) -> str:
    """What a module computes, as text: ``ast.dump`` of its parse, less what computes nothing.

    Left out: comments and layout (parsing drops them), docstrings and other bare strings, the
    annotations of function signatures (never evaluated for a number: ``from __future__ import
    annotations`` keeps them strings) and of local variables (never evaluated at all),
    ``if TYPE_CHECKING:`` blocks, and the order of a run of
    consecutive imports, and of the names in one ``from ... import``, where each binds its own name.
    Annotations in class bodies stay (a dataclass field's type casts its ``--set`` value).
    An import order that matters (a module computing at import, registries filling in order) is
    taken to mean nothing: no module here computes a number at import.
    """
    return _dump(_MeaningOnly().visit(ast.parse(source)))


def _dump(node: Any) -> str:
    """``ast.dump`` without its fields that are None or empty, whose printing Python 3.13 changed
    (and fields newer versions add, such as ``type_params``, are empty in code that predates them):
    a Python upgrade keeps the keys of code that means the same."""
    if isinstance(node, ast.AST):
        fields = [(k, getattr(node, k, None)) for k in node._fields]
        shown = [f"{k}={_dump(v)}" for k, v in fields if v is not None and v != []]
        return f"{type(node).__name__}({', '.join(shown)})"
    if isinstance(node, list):
        return f"[{', '.join(_dump(v) for v in node)}]"
    return repr(node)


def _walked(module: str) -> bool:
    """Imports are followed into every module of the repository but :data:`NOT_COMPUTING`."""
    return module not in NOT_COMPUTING


def _closure(
    seeds: Sequence[Path], root: Path, follow: Callable[[str], bool], closed: frozenset[Path] = frozenset()
) -> set[Path]:
    """``seeds`` and every file under ``root`` they import, transitively, through modules ``follow``
    accepts; files in ``closed`` (a closure already) are kept but not walked again."""
    seen: set[Path] = set()
    todo = list(seeds)
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        if path in closed:
            continue
        for module in _imports(path, root):
            target = _file_of(module, root) if follow(module) else None
            if target is not None and target not in seen:
                todo.append(target)
    return seen


@functools.cache
def _shared_files() -> frozenset[Path]:
    seeds = [path for module in COMPUTING if (path := _file_of(module, _REPO)) is not None]
    return frozenset(_closure(seeds, _REPO, _walked))


def dependency_files(modules: Sequence[str] = ()) -> list[Path]:
    """This repository's files a result of ``modules`` depends on (sorted): the shared part
    (:data:`COMPUTING`) and every file each module imports, transitively (``methods/sscl.py`` ->
    unifeat, core, augment, training, monitors), except through :data:`NOT_COMPUTING`. Modules
    outside the repository (plugins) contribute no file here."""
    shared = _shared_files()
    files = set(shared)
    for module in modules:
        path = _file_of(module, _REPO)
        if path is not None:
            files |= _closure([path], _REPO, _walked, closed=shared)
    return sorted(files)


def undeclared_imports(modules: Sequence[str] = ()) -> list[str]:
    """Imports that break the declaration of what computes, as ``importer -> imported`` lines.

    A :data:`COMPUTING` module may import, of this repository, only modules listed in
    :data:`COMPUTING` or :data:`NOT_COMPUTING` (a name in neither is a stale or missing entry). A
    result's own module (``modules``: a method's, hashed per result) and what it imports may also
    reach the ``methods`` package's modules, which are hashed with that result. Names that are in
    neither list and not a module here are reported too (a list kept after a module moved)."""
    known = set(COMPUTING) | set(NOT_COMPUTING)
    bad = [f"{m} -> (no such module)" for m in sorted(known) if _file_of(m, _REPO) is None]
    todo = [(m, True) for m in COMPUTING] + [(m, False) for m in modules]
    seen: set[str] = set()
    while todo:
        module, shared = todo.pop()
        path = _file_of(module, _REPO)
        if module in seen or path is None:
            continue
        seen.add(module)
        for target in sorted(_imports(path, _REPO)):
            if target == module or target in NOT_COMPUTING or _file_of(target, _REPO) is None:
                continue
            per_result = not shared and target.startswith("methods.")
            if target not in COMPUTING and not per_result:
                bad.append(f"{module} -> {target}")
            elif per_result:
                todo.append((target, False))
    return sorted(set(bad))


def _plugin_identity(module: str) -> dict[str, Any] | None:
    """A module outside the repository: its distribution and version, and a digest of its package's
    files it imports (an editable plugin changes without a new version)."""
    if _file_of(module, _REPO) is not None:
        return None
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.origin or not Path(spec.origin).is_file():
        return {"module": module, "distribution": None, "version": None, "digest": None}
    origin = Path(spec.origin).resolve()
    depth = len(module.split(".")) - (0 if origin.name == "__init__.py" else 1)
    root = origin.parents[depth]
    top = module.partition(".")[0]
    files = _closure([origin], root, lambda m: m == top or m.startswith(top + "."))
    from bench.core.plugins import distribution_of

    dist, version = distribution_of(module)
    return {"module": module, "distribution": dist, "version": version, "digest": _hash_files(files, root)}


def _hash_files(files: Iterable[Path], root: Path) -> str:
    """A digest of what ``files`` compute (:func:`meaning_dump`), each under its path from ``root``."""
    digest = hashlib.sha256()
    for path in sorted(files):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(_meaning(path, root).encode())
    return digest.hexdigest()[:12]


@functools.cache
def _code_digest(modules: tuple[str, ...]) -> str:
    repo = _hash_files(dependency_files(modules), _REPO)
    plugins = [ident for m in modules if (ident := _plugin_identity(m)) is not None]
    if not plugins:
        return repo
    return stable_hash({"repository": repo, "plugins": plugins}, length=12)


def code_digest(modules: Sequence[str] = ()) -> str:
    """The code part of a result key: a hash of what a result of ``modules`` depends on.

    ``modules``: the method's, the protocol's and the backbone's modules. Their files in this
    repository and the shared part (:func:`dependency_files`) are hashed by meaning
    (:func:`meaning_dump`); a plugin module adds its distribution, version and files
    (:func:`_plugin_identity`). Adding or editing one method's file therefore leaves every other
    method's results valid, while editing what a method builds on (``methods/core.py`` for ``core``
    and ``sscl``) starts its cells afresh. Docs, tests, results, reporting, scheduling and tracking
    code never change it, nor do docstrings, comments, annotations or the order of imports.
    """
    return _code_digest(tuple(sorted(set(modules))))


def source_digest() -> str:
    """:func:`code_digest` of the shared part alone (what every result depends on)."""
    return code_digest(())


def clear_cache() -> None:
    """Forget computed digests and git answers (tests that edit sources)."""
    for fn in (_commit, _dirty, _shared_files, _code_digest):
        fn.cache_clear()


def _canonical(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _canonical(dataclasses.asdict(obj))
    if isinstance(obj, dict):
        return {str(k): _canonical(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, (list, tuple)):
        return [_canonical(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, float) and obj.is_integer():
        return int(obj)
    return obj


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and normalised containers, so equal configs serialise equally."""
    return json.dumps(_canonical(obj), sort_keys=True, separators=(",", ":"))


def stable_hash(obj: Any, length: int = 16) -> str:
    """Short sha256 of :func:`canonical_json`: the key of caches and completed cells."""
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:length]

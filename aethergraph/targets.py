"""Finding the function a TARGET names: ``path/to/file.py:function`` or ``package.module:function``."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from pathlib import Path
from typing import Any

from aethergraph.runtime.exits import UsageError

from .decorators import _NodeFunction, graph_fn
from .typed import InputError

FILE_MODULE_PREFIX = "_ag_target_"


class TargetError(Exception):
    """A TARGET that does not name a function we can run."""


def load_target(target: str) -> Any:
    if ":" not in target:
        raise TargetError(
            f"target {target!r} must look like path/to/file.py:function or package.module:function"
        )
    where, _, attr = target.rpartition(":")
    if not where or not attr:
        raise TargetError(f"target {target!r} is missing the module or the function name")
    if where.endswith(".py") or "/" in where or "\\" in where:
        module = _load_file(Path(where))
    else:
        try:
            module = importlib.import_module(where)
        except ImportError as exc:
            raise TargetError(f"cannot import module {where!r}: {exc}") from exc
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise TargetError(f"{where} has no attribute {attr!r}") from None
    if not callable(obj):
        raise TargetError(f"{target} is not callable")
    return as_graph_function(obj)


def as_graph_function(obj: Any) -> Any:
    """A decorated node as is; a plain async function is wrapped as a graph_fn."""
    if isinstance(obj, _NodeFunction):
        return obj
    if inspect.iscoroutinefunction(obj):
        return graph_fn(obj)
    raise TargetError(f"{getattr(obj, '__qualname__', obj)!r} is neither a @graph_fn/@tool nor an async function")


def check_inputs(fn: Any, inputs: dict[str, Any]) -> None:
    """Inputs that do not fit the function fail here, before anything opens (``ag run`` and
    ``ag tui --run`` exit 2): missing or unknown names, and typed parameters that cattrs
    cannot structure (naming the field)."""
    try:
        fn.signature.bind(**inputs, **({"context": None} if fn.wants_context else {}))
    except TypeError as exc:
        raise UsageError(f"inputs do not fit {fn.name}{fn.signature}: {exc}") from None
    try:
        fn.prepare_inputs(inputs)
    except InputError as exc:
        raise UsageError(f"inputs do not fit {fn.name}: {exc}") from None
    except RecursionError:
        raise UsageError(f"inputs do not fit {fn.name}: nested too deeply") from None


def _load_file(path: Path) -> Any:
    path = path.expanduser()
    if not path.is_file():
        raise TargetError(f"no such file: {path}")
    path = path.resolve()
    name = FILE_MODULE_PREFIX + "".join(c if c.isalnum() else "_" for c in path.stem)
    if name in sys.modules and getattr(sys.modules[name], "__file__", None) == str(path):
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise TargetError(f"cannot load {path} as Python")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    # Like `python file.py`: the file's folder comes first on the import path.
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        del sys.modules[name]
        raise TargetError(f"{path}: syntax error: {exc}") from exc
    return module

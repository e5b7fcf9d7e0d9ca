"""Safe YAML loading for configs, including the official ``!!python/object/apply:eval`` lists.

Official Mask2Former YAMLs write e.g. ``MIN_SIZE_TRAIN: !!python/object/apply:eval
["[int(x * 0.1 * 640) for x in range(5, 21)]"]``. detectron2 handles this with an unsafe
YAML loader (arbitrary code). Here the expression is parsed with ``ast`` and evaluated only if it
is plain arithmetic over numbers, lists / tuples, ``range``, ``int``, ``float``, ``round`` and
comprehensions; anything else is refused with an error naming the file.
"""
from __future__ import annotations

import ast
import operator
from typing import Any, Dict

import yaml

__all__ = ["load_yaml", "safe_eval_expression"]

_BINARY_OPS = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY_OPS = {ast.USub: operator.neg, ast.UAdd: operator.pos}
_FUNCTIONS = {"range": range, "int": int, "float": float, "round": round, "list": list, "tuple": tuple}


def safe_eval_expression(expression: str) -> Any:
    """Evaluate a numeric list expression such as ``[int(x * 0.1 * 640) for x in range(5, 21)]``."""
    tree = ast.parse(expression, mode="eval")
    return _evaluate(tree.body, {})


def _evaluate(node: ast.AST, names: Dict[str, Any]) -> Any:
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
        return node.value
    if isinstance(node, (ast.List, ast.Tuple)):
        values = [_evaluate(element, names) for element in node.elts]
        return values if isinstance(node, ast.List) else tuple(values)
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY_OPS:
        return _BINARY_OPS[type(node.op)](_evaluate(node.left, names), _evaluate(node.right, names))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY_OPS:
        return _UNARY_OPS[type(node.op)](_evaluate(node.operand, names))
    if isinstance(node, ast.Name) and node.id in names:
        return names[node.id]
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCTIONS
            and not node.keywords):
        return _FUNCTIONS[node.func.id](*[_evaluate(arg, names) for arg in node.args])
    if isinstance(node, ast.ListComp) and len(node.generators) == 1:
        generator = node.generators[0]
        if not isinstance(generator.target, ast.Name) or generator.is_async:
            raise ValueError("only 'for <name> in <iterable>' comprehensions are allowed")
        results = []
        for value in _evaluate(generator.iter, names):
            scope = {**names, generator.target.id: value}
            if all(_evaluate(condition, scope) for condition in generator.ifs):
                results.append(_evaluate(node.elt, scope))
        return results
    if isinstance(node, ast.Compare) and len(node.ops) == 1:
        comparisons = {ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt,
                       ast.GtE: operator.ge, ast.Eq: operator.eq, ast.NotEq: operator.ne}
        if type(node.ops[0]) in comparisons:
            return comparisons[type(node.ops[0])](_evaluate(node.left, names),
                                                  _evaluate(node.comparators[0], names))
    raise ValueError(f"unsupported expression element: {ast.dump(node)[:80]}")


class _ConfigLoader(yaml.SafeLoader):
    """SafeLoader that also understands the official configs' numeric ``eval`` tag."""


def _construct_eval(loader: _ConfigLoader, node: yaml.Node) -> Any:
    args = loader.construct_sequence(node)
    if len(args) != 1 or not isinstance(args[0], str):
        raise yaml.constructor.ConstructorError(
            None, None, "!!python/object/apply:eval takes one string argument", node.start_mark)
    try:
        return safe_eval_expression(args[0])
    except (ValueError, SyntaxError, TypeError) as err:
        raise yaml.constructor.ConstructorError(
            None, None, f"refusing to evaluate {args[0]!r}: {err}", node.start_mark) from None


_ConfigLoader.add_constructor("tag:yaml.org,2002:python/object/apply:eval", _construct_eval)


def load_yaml(stream, filename: str = "<string>") -> Any:
    """Parse a config YAML safely; errors name ``filename``."""
    try:
        return yaml.load(stream, Loader=_ConfigLoader)
    except yaml.YAMLError as err:
        raise ValueError(f"Cannot parse config file {filename!r}: {err}") from None

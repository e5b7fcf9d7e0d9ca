"""Safe YAML loading for configs, including the official ``!!python/object/apply:eval`` lists.

Official Mask2Former YAMLs write e.g. ``MIN_SIZE_TRAIN: !!python/object/apply:eval
["[int(x * 0.1 * 640) for x in range(5, 21)]"]``. detectron2 handles this with an unsafe
YAML loader (arbitrary code). Here the expression is parsed with ``ast`` and evaluated only if it
is plain arithmetic over numbers, lists / tuples, ``range``, ``int``, ``float``, ``round`` and
comprehensions; anything else is refused with an error naming the file.

The evaluation is bounded, so that a config can neither run code nor hang the loader
(``[9**9**9]``, ``range(10**10)``, ``[0] * 10**9``) -- every limit raises
:class:`ExpressionLimitError` (a ``ValueError``):

* the expression text is at most :data:`MAX_EXPRESSION_CHARS` characters;
* an exponent is at most :data:`MAX_EXPONENT` in absolute value;
* an integer result has at most :data:`MAX_INT_BITS` bits (floats overflow to an error too);
* a ``range``, list, tuple or repetition holds at most :data:`MAX_SEQUENCE_LENGTH` elements;
* the whole evaluation visits at most :data:`MAX_STEPS` expression nodes.

The YAML text itself may nest ``[`` / ``{`` at most :data:`MAX_FLOW_DEPTH` levels (PyYAML's
scanner takes seconds for 2000 levels, minutes for more).

The official configs need far less (16-element lists of numbers below 10**4).
"""
from __future__ import annotations

import ast
import math
import operator
from typing import Any, Dict, List

import yaml

__all__ = ["ExpressionLimitError", "load_yaml", "safe_eval_expression"]

MAX_EXPRESSION_CHARS = 2000
MAX_EXPONENT = 64
MAX_INT_BITS = 128
MAX_SEQUENCE_LENGTH = 10_000
MAX_STEPS = 100_000


class ExpressionLimitError(ValueError):
    """An ``eval`` expression of a config exceeds one of the evaluator's bounds."""


def _power(base: Any, exponent: Any) -> Any:
    if isinstance(exponent, (int, float)) and abs(exponent) > MAX_EXPONENT:
        raise ExpressionLimitError(f"exponent {exponent} exceeds the limit of {MAX_EXPONENT}")
    return operator.pow(base, exponent)


def _multiply(left: Any, right: Any) -> Any:
    for seq, count in ((left, right), (right, left)):  # list repetition: [0] * n
        if isinstance(seq, (list, tuple)) and isinstance(count, int):
            _check_length(len(seq) * max(count, 0), "repetition")
    return operator.mul(left, right)


_BINARY_OPS = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: _multiply,
    ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
    ast.Pow: _power,
}
_UNARY_OPS = {ast.USub: operator.neg, ast.UAdd: operator.pos}
_COMPARISONS = {ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt,
                ast.GtE: operator.ge, ast.Eq: operator.eq, ast.NotEq: operator.ne}


def _bounded_range(*args: Any) -> range:
    if not all(isinstance(a, int) for a in args):
        raise ValueError(f"range() takes integers, got {args}")
    values = range(*args)
    _check_length(len(values), "range")
    return values


_FUNCTIONS = {"range": _bounded_range, "int": int, "float": float, "round": round, "list": list, "tuple": tuple}


def _check_length(length: int, what: str) -> None:
    if length > MAX_SEQUENCE_LENGTH:
        raise ExpressionLimitError(f"{what} of {length} elements exceeds the limit of {MAX_SEQUENCE_LENGTH}")


def _check_value(value: Any) -> Any:
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise ExpressionLimitError(f"an integer of {value.bit_length()} bits exceeds the limit of {MAX_INT_BITS}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ExpressionLimitError(f"the expression produces a non-finite number ({value})")
    if isinstance(value, (list, tuple, range)):
        _check_length(len(value), type(value).__name__)
    return value


class _Evaluator:
    """Walks the ``ast`` of one expression, counting steps against :data:`MAX_STEPS`."""

    def __init__(self) -> None:
        self.steps = 0

    def __call__(self, node: ast.AST, names: Dict[str, Any]) -> Any:
        self.steps += 1
        if self.steps > MAX_STEPS:
            raise ExpressionLimitError(f"evaluation exceeds {MAX_STEPS} steps")
        return _check_value(self._evaluate(node, names))

    def _evaluate(self, node: ast.AST, names: Dict[str, Any]) -> Any:
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return node.value
        if isinstance(node, (ast.List, ast.Tuple)):
            _check_length(len(node.elts), "literal")
            values = [self(element, names) for element in node.elts]
            return values if isinstance(node, ast.List) else tuple(values)
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY_OPS:
            return _BINARY_OPS[type(node.op)](self(node.left, names), self(node.right, names))
        if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY_OPS:
            return _UNARY_OPS[type(node.op)](self(node.operand, names))
        if isinstance(node, ast.Name) and node.id in names:
            return names[node.id]
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCTIONS
                and not node.keywords):
            return _FUNCTIONS[node.func.id](*[self(arg, names) for arg in node.args])
        if isinstance(node, ast.ListComp) and len(node.generators) == 1:
            return self._comprehension(node, names)
        if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in _COMPARISONS:
            return _COMPARISONS[type(node.ops[0])](self(node.left, names), self(node.comparators[0], names))
        raise ValueError(f"unsupported expression element: {ast.dump(node)[:80]}")

    def _comprehension(self, node: ast.ListComp, names: Dict[str, Any]) -> List[Any]:
        generator = node.generators[0]
        if not isinstance(generator.target, ast.Name) or generator.is_async:
            raise ValueError("only 'for <name> in <iterable>' comprehensions are allowed")
        iterable = self(generator.iter, names)
        if not isinstance(iterable, (list, tuple, range)):
            raise ValueError(f"a comprehension iterates over a list, tuple or range, got {type(iterable).__name__}")
        results = []
        for value in iterable:
            scope = {**names, generator.target.id: value}
            if all(self(condition, scope) for condition in generator.ifs):
                results.append(self(node.elt, scope))
        return results


def safe_eval_expression(expression: str) -> Any:
    """Evaluate a numeric list expression such as ``[int(x * 0.1 * 640) for x in range(5, 21)]``.

    Raises:
        ExpressionLimitError: the expression exceeds a bound (see the module docstring).
        ValueError: anything but the allowed arithmetic / list forms, or an arithmetic error.
    """
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise ExpressionLimitError(f"expression of {len(expression)} characters exceeds the limit "
                                   f"of {MAX_EXPRESSION_CHARS}")
    try:
        tree = ast.parse(expression, mode="eval")
        return _Evaluator()(tree.body, {})
    except (SyntaxError, TypeError, ZeroDivisionError, OverflowError, RecursionError, MemoryError) as err:
        raise ValueError(f"{type(err).__name__}: {err}") from None


class _ConfigLoader(yaml.SafeLoader):
    """SafeLoader that also understands the official configs' numeric ``eval`` tag."""


def _construct_eval(loader: _ConfigLoader, node: yaml.Node) -> Any:
    args = loader.construct_sequence(node)
    if len(args) != 1 or not isinstance(args[0], str):
        raise yaml.constructor.ConstructorError(
            None, None, "!!python/object/apply:eval takes one string argument", node.start_mark)
    try:
        return safe_eval_expression(args[0])
    except ValueError as err:
        raise yaml.constructor.ConstructorError(
            None, None, f"refusing to evaluate {args[0][:200]!r}: {err}", node.start_mark) from None


_ConfigLoader.add_constructor("tag:yaml.org,2002:python/object/apply:eval", _construct_eval)


MAX_FLOW_DEPTH = 100  # PyYAML's scanner slows down steeply with nested [ / {: 2000 levels take seconds


def _check_flow_depth(text: str, filename: str) -> None:
    """Refuse ``[`` / ``{`` nested deeper than :data:`MAX_FLOW_DEPTH` (outside quotes), which would
    make the parser run for minutes; official configs nest 2 levels."""
    depth, quote = 0, None
    for char in text:
        if quote:
            if char == quote or char == "\n":
                quote = None
        elif char in "'\"":
            quote = char
        elif char in "[{":
            depth += 1
            if depth > MAX_FLOW_DEPTH:
                raise ValueError(f"Cannot parse config file {filename!r}: '[' / '{{' nested more than "
                                 f"{MAX_FLOW_DEPTH} levels")
        elif char in "]}":
            depth = max(depth - 1, 0)


def load_yaml(stream, filename: str = "<string>") -> Any:
    """Parse a config YAML safely; every failure is a ``ValueError`` naming ``filename``."""
    try:
        text = stream if isinstance(stream, (str, bytes)) else stream.read()
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        _check_flow_depth(text, filename)
        return yaml.load(text, Loader=_ConfigLoader)
    except yaml.YAMLError as err:
        raise ValueError(f"Cannot parse config file {filename!r}: {err}") from None
    except (RecursionError, UnicodeDecodeError) as err:
        raise ValueError(f"Cannot parse config file {filename!r}: {type(err).__name__}: {err}") from None

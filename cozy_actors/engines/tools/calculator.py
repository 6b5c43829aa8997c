"""The built-in calculator: arithmetic on a whitelisted AST, with every intermediate value bounded.

Why: one chat message can make the model evaluate anything. Python integers are exact and
unbounded, so `round(1, -10**7)` or `9**9**9` costs seconds to hours of CPU. Each operation is
checked BEFORE it is computed (a check on the result is too late): operands and results stay
within ±1e100, an integer power is refused when its result would need more than `MAX_BITS` bits,
`round`'s digit count is bounded. So every evaluation finishes in microseconds.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from typing import Any

from .base import ToolError

Number = int | float
MAX_EXPRESSION = 200  # characters
MAX_MAGNITUDE = 1e100  # every operand and intermediate result
MAX_BITS = 333  # ≈ log2(1e100): the largest exact integer a power may produce
MAX_ROUND_DIGITS = 100  # |ndigits| of round(); round(1, -10**7) computes 10**(10**7) otherwise
MAX_CALL_ARGS = 4

_BINOPS: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_CONSTS = {"pi": math.pi, "e": math.e}


def _round(x: Number, ndigits: Number | None = None) -> Number:
    if ndigits is None:
        return round(x)
    if not isinstance(ndigits, int):
        raise ToolError("round: ndigits must be an integer")
    if abs(ndigits) > MAX_ROUND_DIGITS:
        raise ToolError(f"round: ndigits beyond ±{MAX_ROUND_DIGITS}")
    return round(x, ndigits)


_FUNCS: dict[str, Callable[..., Any]] = {
    "sqrt": math.sqrt,
    "abs": abs,
    "round": _round,
    "min": min,
    "max": max,
    "floor": math.floor,
    "ceil": math.ceil,
    "log": math.log,
    "log10": math.log10,
    "exp": math.exp,
    "sin": math.sin,
    "cos": math.cos,
    "tan": math.tan,
}


def evaluate(expression: str) -> Number:
    """Evaluate arithmetic by walking a whitelisted AST; anything else is refused with a ToolError."""
    if len(expression) > MAX_EXPRESSION:
        raise ToolError(f"expression longer than {MAX_EXPRESSION} characters")
    try:
        tree = ast.parse(expression.replace("^", "**"), mode="eval")
    except (SyntaxError, ValueError) as exc:
        raise ToolError(f"not an arithmetic expression: {getattr(exc, 'msg', exc)}") from exc
    except RecursionError as exc:
        raise ToolError("expression nested too deeply") from exc
    try:
        return _eval(tree.body)
    except RecursionError as exc:
        raise ToolError("expression nested too deeply") from exc


def _bounded(value: Any) -> Number:
    """Refuse what is not a real number within ±MAX_MAGNITUDE (int comparison with a float is exact)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ToolError("result is not a real number")
    if isinstance(value, float) and math.isnan(value):
        raise ToolError("result is not a number")
    if not -MAX_MAGNITUDE <= value <= MAX_MAGNITUDE:
        raise ToolError(f"value out of range (beyond ±{MAX_MAGNITUDE:g})")
    return value


def _check_pow(base: Number, exp: Number) -> None:
    """Only exact integer powers cost more than O(1); predict their size before computing them."""
    if isinstance(base, int) and isinstance(exp, int) and exp > 1 and abs(base) > 1:
        if exp * math.log2(abs(base)) > MAX_BITS:
            raise ToolError(f"value out of range (beyond ±{MAX_MAGNITUDE:g})")


def _eval(node: ast.AST) -> Number:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return _bounded(node.value)
    if isinstance(node, ast.Name) and node.id in _CONSTS:
        return _CONSTS[node.id]
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _bounded(_UNARY[type(node.op)](_eval(node.operand)))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Pow):
            _check_pow(left, right)
        try:
            return _bounded(_BINOPS[type(node.op)](left, right))
        except ZeroDivisionError as exc:
            raise ToolError("division by zero") from exc
        except OverflowError as exc:
            raise ToolError(f"value out of range (beyond ±{MAX_MAGNITUDE:g})") from exc
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in _FUNCS
        and not node.keywords
        and 0 < len(node.args) <= MAX_CALL_ARGS
    ):
        args = [_eval(a) for a in node.args]
        try:
            return _bounded(_FUNCS[node.func.id](*args))
        except (ValueError, TypeError, OverflowError, ZeroDivisionError) as exc:
            raise ToolError(f"{node.func.id}: {exc}") from exc
    raise ToolError(f"unsupported element in expression: {ast.dump(node)[:60]}")


def calculator(args: dict[str, Any]) -> dict[str, Any]:
    """The tool body (synchronous: the catalog runs it off the event loop, under the turn's timeout)."""
    value = evaluate(args["expression"])
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        value = int(value)
    elif isinstance(value, int) and not -(2**63) <= value < 2**63:
        value = float(value)  # JSON (orjson) carries 64-bit integers; beyond that, a float
    return {"expression": args["expression"], "result": value}

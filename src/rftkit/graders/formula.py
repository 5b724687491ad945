"""`calculate_output` of a multi grader: a small arithmetic language, parsed without `eval`.

    0.5 * exact + 0.5 * max(fuzzy, bleu) ^ 2

Numbers, the sub-graders' keys, `+ - * /`, `^` (power, right-associative, binds tighter
than unary minus as in mathematics: `-2^2 == -4`), parentheses, and the functions
`min max` (any number of arguments) and `abs floor ceil exp sqrt log` (one argument;
`log` is natural). A parse error names the position; an unknown key is an error too.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Callable

FUNCTIONS: dict[str, tuple[Callable[..., float], int | None]] = {
    "min": (min, None), "max": (max, None),
    "abs": (abs, 1), "floor": (math.floor, 1), "ceil": (math.ceil, 1),
    "exp": (math.exp, 1), "sqrt": (math.sqrt, 1), "log": (math.log, 1),
}
TOKEN = re.compile(r"(\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)|([A-Za-z_]\w*)|(\S)")


class FormulaError(ValueError):
    """The formula does not parse (or names a key that is not a sub-grader)."""


@dataclass(frozen=True)
class Node:
    op: str  # "num", "var", "neg", one of + - * / ^, or "call"
    value: float | str = 0.0
    args: tuple["Node", ...] = ()


def tokenize(text: str) -> list[tuple[str, str, int]]:
    """(kind, text, position) triples; kind is num, name or op."""
    tokens, position = [], 0
    while True:
        while position < len(text) and text[position].isspace():
            position += 1
        if position == len(text):
            return tokens
        match = TOKEN.match(text, position)
        number, name, op = match.groups()  # (\S) matches any character left
        if op is not None and op not in "+-*/^(),":
            raise FormulaError(f"unexpected {op!r} at position {position + 1}")
        tokens.append(("num", number, position) if number else ("name", name, position) if name else ("op", op, position))
        position = match.end()


class Parser:
    """Recursive descent: sum := product (('+'|'-') product)*; product := unary (('*'|'/') unary)*;
    unary := '-' unary | power; power := atom ('^' unary)?"""

    def __init__(self, text: str, names: set[str] | None):
        self.text, self.names = text, names
        self.tokens = tokenize(text)
        self.index = 0

    def parse(self) -> Node:
        if not self.tokens:
            raise FormulaError("the formula is empty")
        node = self.sum()
        if self.index < len(self.tokens):
            _, text, position = self.tokens[self.index]
            raise FormulaError(f"unexpected {text!r} at position {position + 1}")
        return node

    def peek(self) -> str | None:
        return self.tokens[self.index][1] if self.index < len(self.tokens) else None

    def take(self, expected: str | None = None) -> tuple[str, str, int]:
        if self.index >= len(self.tokens):
            raise FormulaError(f"the formula ends early{f': expected {expected!r}' if expected else ''}")
        token = self.tokens[self.index]
        if expected is not None and token[1] != expected:
            raise FormulaError(f"expected {expected!r} at position {token[2] + 1}, found {token[1]!r}")
        self.index += 1
        return token

    def sum(self) -> Node:
        node = self.product()
        while self.peek() in ("+", "-"):
            node = Node(self.take()[1], args=(node, self.product()))
        return node

    def product(self) -> Node:
        node = self.unary()
        while self.peek() in ("*", "/"):
            node = Node(self.take()[1], args=(node, self.unary()))
        return node

    def unary(self) -> Node:
        if self.peek() == "-":
            self.take()
            return Node("neg", args=(self.unary(),))
        if self.peek() == "+":
            self.take()
            return self.unary()
        return self.power()

    def power(self) -> Node:
        base = self.atom()
        if self.peek() == "^":
            self.take()
            return Node("^", args=(base, self.unary()))
        return base

    def atom(self) -> Node:
        kind, text, position = self.take()
        if kind == "num":
            return Node("num", float(text))
        if kind == "op" and text == "(":
            node = self.sum()
            self.take(")")
            return node
        if kind == "name" and self.peek() == "(" and text in FUNCTIONS:
            return self.call(text, position)
        if kind == "name" and text not in FUNCTIONS:
            if self.names is not None and text not in self.names:
                known = ", ".join(sorted(self.names)) or "none"
                raise FormulaError(f"{text!r} at position {position + 1} is not a grader key (keys: {known})")
            return Node("var", text)
        raise FormulaError(f"unexpected {text!r} at position {position + 1}")

    def call(self, name: str, position: int) -> Node:
        self.take("(")
        args = [self.sum()]
        while self.peek() == ",":
            self.take()
            args.append(self.sum())
        self.take(")")
        arity = FUNCTIONS[name][1]
        if arity is not None and len(args) != arity:
            raise FormulaError(f"{name}() at position {position + 1} takes {arity} argument, got {len(args)}")
        return Node("call", name, tuple(args))


def parse(text: str, names: set[str] | None = None) -> Node:
    """Parse a formula; `names` (when given) are the only variables allowed.

    >>> evaluate(parse("0.5 * a + 0.5 * max(b, 1) ^ 2"), {"a": 1.0, "b": 0.0})
    1.0
    """
    return Parser(text, names).parse()


BINARY = {
    "+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b,
    "/": lambda a, b: a / b, "^": lambda a, b: a ** b,
}


def evaluate(node: Node, values: dict[str, float]) -> float:
    """The formula's value; ZeroDivisionError, ValueError or OverflowError on bad math.

    >>> evaluate(parse("-2^2"), {})
    -4.0
    """
    if node.op == "num":
        return float(node.value)
    if node.op == "var":
        return float(values[str(node.value)])
    args = [evaluate(a, values) for a in node.args]
    if node.op == "neg":
        return -args[0]
    if node.op == "call":
        result = FUNCTIONS[str(node.value)][0](*args)
        return float(result)
    result = BINARY[node.op](*args)
    if isinstance(result, complex):  # (-8) ^ (1/3): no real answer
        raise ValueError(f"{args[0]} ^ {args[1]} is not a real number")
    return float(result)

"""CloudWatch Logs filter patterns, evaluated here against real log lines: the subset of the
syntax the plan's metric filters use, each rule as AWS documents it (docs/runbook.md, "Metric
filters"; tests/test_filters.py holds AWS's own examples). No well-kept evaluator exists to use
instead: moto's matches any JSON pattern (it treats the syntax as unsupported and lets every
event through), and AWS's TestMetricFilter needs AWS.

    matches('{ ($.path = "/health") && ($.status = 503) }', line)   # JSON patterns
    matches('"GET /mlflow/health" -"200 OK"', line)                   # terms

Terms (unstructured events): every term must occur in the event (case-sensitive substring);
``-term`` must not occur; ``?term`` terms: at least one must occur; a quoted term is one phrase;
an empty pattern matches every event.

JSON patterns: ``{ expression }`` over the event parsed as JSON. A comparison is
``$.a.b[0] OP value`` with OP one of = != < > <= >=: a quoted string or a bare word (``*`` is a
wildcard; = and != only) compares with a string field; a number with a number field (a string
field never equals a number). ``$.a IS TRUE|FALSE|NULL`` and ``$.a NOT EXISTS`` test the field
itself. Comparisons combine with && and ||, grouped by parentheses. A field that is missing
makes its comparison false; an event that is not JSON matches no JSON pattern.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from harness.errors import ConfigurationError

_MISSING = object()
_TOKEN = re.compile(
    r"""\s*(?:
        (?P<and>&&) | (?P<or>\|\|) | (?P<open>\() | (?P<close>\)) |
        (?P<op>!=|<=|>=|=|<|>) |
        (?P<string>"(?:[^"\\]|\\.)*") |
        (?P<selector>\$(?:\.[A-Za-z0-9_\-]+|\[\d+\])*) |
        (?P<word>[^\s()=!<>&|"]+)
    )""",
    re.VERBOSE,
)


class PatternError(ConfigurationError):
    def __init__(self, pattern: str, problem: str) -> None:
        super().__init__("a CloudWatch Logs filter pattern", repr(pattern), problem)


def matches(pattern: str, event: str) -> bool:
    """Whether a metric filter with ``pattern`` counts ``event`` (one log line)."""
    return compile_pattern(pattern)(event)


def compile_pattern(pattern: str) -> Callable[[str], bool]:
    text = pattern.strip()
    if text.startswith("{"):
        if not text.endswith("}"):
            raise PatternError(pattern, "a JSON pattern ends with }")
        test = _JsonParser(pattern, text[1:-1]).parse()

        def json_match(event: str) -> bool:
            try:
                document = json.loads(event)
            except ValueError:
                return False
            return test(document)

        return json_match
    return _terms(pattern, text)


def _terms(pattern: str, text: str) -> Callable[[str], bool]:
    required: list[str] = []
    excluded: list[str] = []
    optional: list[str] = []
    for quoted, bare in re.findall(r'([-?]?"(?:[^"\\]|\\.)*")|(\S+)', text):
        term = quoted or bare
        kind, term = (term[0], term[1:]) if term[0] in "-?" and len(term) > 1 else ("", term)
        if term.startswith('"'):
            if not term.endswith('"') or len(term) < 2:
                raise PatternError(pattern, "a quoted term ends with a quote")
            term = json.loads(term)
        {"": required, "-": excluded, "?": optional}[kind].append(term)

    def term_match(event: str) -> bool:
        return (
            all(t in event for t in required)
            and not any(t in event for t in excluded)
            and (not optional or any(t in event for t in optional))
        )

    return term_match


@dataclass
class _Token:
    kind: str
    text: str


class _JsonParser:
    """expression := conjunction (|| conjunction)*; conjunction := primary (&& primary)*;
    primary := ( expression ) | selector OP value | selector IS TRUE|FALSE|NULL | selector NOT EXISTS"""

    def __init__(self, pattern: str, body: str) -> None:
        self.pattern = pattern
        self.tokens: list[_Token] = []
        pos = 0
        body = body.rstrip()
        while pos < len(body):
            m = _TOKEN.match(body, pos)
            if m is None or m.end() == pos:
                raise PatternError(pattern, f"cannot read {body[pos : pos + 20]!r}")
            kind = m.lastgroup or ""
            self.tokens.append(_Token(kind, m.group(kind)))
            pos = m.end()
        self.i = 0

    def parse(self) -> Callable[[Any], bool]:
        if not self.tokens:
            raise PatternError(self.pattern, "an empty JSON pattern")
        test = self._expression()
        if self.i != len(self.tokens):
            raise PatternError(self.pattern, f"unexpected {self.tokens[self.i].text!r}")
        return test

    def _peek(self, kind: str) -> bool:
        return self.i < len(self.tokens) and self.tokens[self.i].kind == kind

    def _take(self, kind: str, what: str) -> _Token:
        if not self._peek(kind):
            seen = self.tokens[self.i].text if self.i < len(self.tokens) else "the end"
            raise PatternError(self.pattern, f"expected {what}, found {seen!r}")
        self.i += 1
        return self.tokens[self.i - 1]

    def _expression(self) -> Callable[[Any], bool]:
        parts = [self._conjunction()]
        while self._peek("or"):
            self.i += 1
            parts.append(self._conjunction())
        return parts[0] if len(parts) == 1 else lambda doc: any(p(doc) for p in parts)

    def _conjunction(self) -> Callable[[Any], bool]:
        parts = [self._primary()]
        while self._peek("and"):
            self.i += 1
            parts.append(self._primary())
        return parts[0] if len(parts) == 1 else lambda doc: all(p(doc) for p in parts)

    def _primary(self) -> Callable[[Any], bool]:
        if self._peek("open"):
            self.i += 1
            inner = self._expression()
            self._take("close", ")")
            return inner
        path = _path(self._take("selector", "a selector such as $.status").text)
        if self._peek("word") and self.tokens[self.i].text in ("IS", "NOT"):
            word = self._take("word", "IS or NOT").text
            value = self._take("word", "TRUE, FALSE, NULL or EXISTS").text
            if word == "NOT" and value == "EXISTS":
                return lambda doc: _lookup(doc, path) is _MISSING
            wanted = {"TRUE": True, "FALSE": False, "NULL": None}
            if word != "IS" or value not in wanted:
                raise PatternError(self.pattern, f"expected IS TRUE|FALSE|NULL or NOT EXISTS, found {word} {value}")
            return lambda doc: (found := _lookup(doc, path)) is not _MISSING and found is wanted[value]
        op = self._take("op", "a comparison (= != < > <= >=)").text
        if self._peek("string"):
            return _string_test(path, op, json.loads(self._take("string", "a value").text), self.pattern)
        word = self._take("word", "a value").text
        try:
            number = float(word)
        except ValueError:
            return _string_test(path, op, word, self.pattern)
        return _number_test(path, op, number)


def _path(selector: str) -> list[str | int]:
    return [int(p[1:-1]) if p.startswith("[") else p[1:] for p in re.findall(r"\.[^.\[]+|\[\d+\]", selector[1:])]


def _lookup(doc: Any, path: list[str | int]) -> Any:
    for step in path:
        if isinstance(step, int):
            if not isinstance(doc, list) or step >= len(doc):
                return _MISSING
        elif not isinstance(doc, dict) or step not in doc:
            return _MISSING
        doc = doc[step]
    return doc


def _string_test(path: list[str | int], op: str, value: str, pattern: str) -> Callable[[Any], bool]:
    if op not in ("=", "!="):
        raise PatternError(pattern, f"strings compare with = or != only, not {op}")

    def test(doc: Any) -> bool:
        found = _lookup(doc, path)
        if not isinstance(found, str):
            return False
        same = re.fullmatch(".*".join(map(re.escape, value.split("*"))), found) is not None
        return same if op == "=" else not same

    return test


_NUMERIC: dict[str, Callable[[float, float], bool]] = {
    "=": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    ">": lambda a, b: a > b,
    "<=": lambda a, b: a <= b,
    ">=": lambda a, b: a >= b,
}


def _number_test(path: list[str | int], op: str, value: float) -> Callable[[Any], bool]:
    compare = _NUMERIC[op]

    def test(doc: Any) -> bool:
        found = _lookup(doc, path)
        return isinstance(found, int | float) and not isinstance(found, bool) and compare(float(found), value)

    return test

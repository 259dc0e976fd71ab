"""Runs inside a lab host (see hosts.Probe): reads one JSON request per line, ``{"code": ...}``,
runs the code in one persistent namespace and answers ``{"value": <last expression>}`` or
``{"error": <traceback>}``. Values are sent as JSON (anything else as its string form)."""

from __future__ import annotations

import ast
import json
import sys
import traceback
from typing import Any


def evaluate(code: str, scope: dict[str, Any]) -> Any:
    tree = ast.parse(code)
    last = tree.body[-1] if tree.body else None
    if isinstance(last, ast.Expr):
        exec(compile(ast.Module(tree.body[:-1], []), "<probe>", "exec"), scope)
        return eval(compile(ast.Expression(last.value), "<probe>", "eval"), scope)
    exec(compile(tree, "<probe>", "exec"), scope)
    return None


def main() -> None:
    scope: dict[str, Any] = {}
    for line in sys.stdin:
        try:
            value = evaluate(json.loads(line)["code"], scope)
            answer = json.dumps({"value": value}, default=str)
        except Exception:
            answer = json.dumps({"error": traceback.format_exc()})
        sys.stdout.write(answer + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()

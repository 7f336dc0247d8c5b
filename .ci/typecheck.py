"""mypy over worldsim/, envs/ and bridges/ under their installed names: envs/ is worldsim.envs, bridges/ is
worldsim.bridges.

`mypy -p worldsim` cannot see the two mapped folders: pyproject's [tool.setuptools.package-dir] puts them inside the
package, and the editable install reaches them through setuptools' import hook, which mypy does not run
(python/mypy#12313). `mypy worldsim envs bridges` checks them as top-level `envs` and `bridges`, so every
`worldsim.envs`/`worldsim.bridges` import is unresolved. This script collects the files as mypy does (`files` and
the rest of [tool.mypy] in pyproject.toml), renames the modules under envs/ and bridges/, and builds: imports across
the three folders get their real types. Extra arguments go to mypy (`python .ci/typecheck.py --pretty`).
"""

from __future__ import annotations

import sys

from mypy import build
from mypy.errors import CompileError
from mypy.main import process_options
from mypy.modulefinder import BuildSource

PACKAGE_DIR = {"envs": "worldsim.envs", "bridges": "worldsim.bridges"}  # as [tool.setuptools.package-dir]


def installed_name(module: str) -> str:
    """`envs.pushworld` → `worldsim.envs.pushworld`; modules outside the mapped folders keep their names."""
    top, dot, rest = module.partition(".")
    return PACKAGE_DIR[top] + dot + rest if top in PACKAGE_DIR else module


def main(argv: list[str] | None = None) -> int:
    sources, options = process_options(sys.argv[1:] if argv is None else argv)
    sources = [BuildSource(s.path, installed_name(s.module or ""), s.text, s.base_dir) for s in sources]
    messages: list[str] = []

    def flush(filename: str | None, new: list[str], serious: bool) -> None:
        messages.extend(new)
        for line in new:
            print(line, file=sys.stderr if serious else sys.stdout)

    try:
        build.build(sources, options, flush_errors=flush)
    except CompileError:  # a blocking error (a syntax error, say): its messages went through flush
        return 2
    errors = [m for m in messages if ": error:" in m]
    if errors:
        files = {m.split(":", 1)[0] for m in errors}
        print(f"Found {len(errors)} errors in {len(files)} files (checked {len(sources)} source files)")
        return 1
    print(f"Success: no issues found in {len(sources)} source files")
    return 0


if __name__ == "__main__":
    sys.exit(main())

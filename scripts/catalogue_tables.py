"""Write the catalogue tables of README.md and docs/INDICATORS.md from the shipped
definitions, between ``<!-- catalogue-table:begin -->`` and ``…:end -->`` markers.

    python scripts/catalogue_tables.py           # rewrite the tables
    python scripts/catalogue_tables.py --check   # exit 1 when a table is out of date

tests/docs/test_readme.py runs the check, so a definition added without its row fails CI.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from services.indicators.definitions import IndicatorDefinition  # noqa: E402
from services.indicators.evaluator import Catalogue  # noqa: E402

BEGIN, END = "<!-- catalogue-table:begin -->", "<!-- catalogue-table:end -->"
_BLOCK = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END), re.S)
_BETTER = {"higher_is_better": "higher", "lower_is_better": "lower"}


def _cell(text: str) -> str:
    return " ".join(text.replace("|", "\\|").split())


def _shape(d: IndicatorDefinition) -> str:
    if d.kind == "manual":
        return f"manual, {d.unit}, {_BETTER[d.direction]}"
    case = "" if d.case == "episode" else f" per {d.case.replace('_', '-')}"
    return f"{d.kind}{case}, {d.unit}, {_BETTER[d.direction]}"


def table(catalogue: Catalogue) -> str:
    rows = [
        "| code | 名称 | name | year, group | kind, unit, better | default target | source |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for d in catalogue.definitions():
        target = "none" if d.target is None else f"{d.target:g}"
        year = d.effective_catalogue or "any"
        rows.append(
            f"| {d.code} | {_cell(d.name.zh)} | {_cell(d.name.en)} | {year}, "
            f"{d.effective_group} | {_shape(d)} | {target} | {_cell(d.source)} |"
        )
    return "\n".join(rows)


def render(text: str, catalogue: Catalogue) -> str:
    block = f"{BEGIN}\n{table(catalogue)}\n{END}"
    if not _BLOCK.search(text):
        raise SystemExit("no catalogue-table markers")
    return _BLOCK.sub(lambda _: block, text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    catalogue = Catalogue.load()
    stale = []
    for path in (ROOT / "README.md", ROOT / "docs" / "INDICATORS.md"):
        text = path.read_text(encoding="utf-8")
        new = render(text, catalogue)
        if new != text:
            stale.append(path.name)
            if not args.check:
                path.write_text(new, encoding="utf-8")
    if args.check and stale:
        print(f"out of date: {', '.join(stale)} (run python scripts/catalogue_tables.py)")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

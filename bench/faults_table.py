"""Print reports/faults.json (written by the faults suite) as the markdown table in docs/measured.md.

.venv/bin/python bench/faults_table.py [reports/faults.json]
"""

import json
import sys
from pathlib import Path


def cell(r: dict, key: str, budget: str) -> str:
    if r.get(key) is None:
        return "-"
    return f"{r[key]:.2f} / {r[budget]:.2f}"


def main() -> None:
    path = Path(sys.argv[1] if len(sys.argv) > 1 else "reports/faults.json")
    rows = json.loads(path.read_text())
    print(
        "| scenario | runtime | fault | detected s / budget | recovered s / budget | slowest /health s / budget "
        "| writes ok / clear 503 / unclear / missing |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        writes = (
            f"{r['acknowledged']} / {r['clear_503']} / {r['unclear']} / {r.get('missing', '-')}"
            if "writes" in r
            else "-"
        )
        print(
            f"| {r['scenario']} | {r['runtime']} | {r['fault']} | {cell(r, 'detected_s', 'detect_budget_s')} | "
            f"{cell(r, 'recovered_s', 'recover_budget_s')} | {cell(r, 'slowest_s', 'slowest_budget_s')} | {writes} |"
        )


if __name__ == "__main__":
    main()

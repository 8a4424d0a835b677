"""The harness's own tests, of this checkout (REPO): its code, its files, its documentation."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

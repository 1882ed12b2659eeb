"""The figures of issue 16's goals, as each benchmark reports them to bench/all.py.

A benchmark prints one `FIGURE {json}` line per figure: its name, value, goal (value <= goal),
and what it was measured against; bench/all.py collects them into one table.
"""

from __future__ import annotations

import json


def figure(name: str, value: float, goal: float, baseline: str, **extra: object) -> None:
    print("FIGURE " + json.dumps({"name": name, "value": round(value, 3), "goal": goal, "baseline": baseline, **extra}), flush=True)

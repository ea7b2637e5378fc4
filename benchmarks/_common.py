"""Helpers shared by the benchmark scripts: a results table on stdout and JSON beside RESULTS.md."""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent


def machine() -> dict:
    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": __import__("os").cpu_count(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }


def table(rows: list[dict], columns: list[str]) -> str:
    cells = [[str(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [line.format(*columns), line.format(*("-" * w for w in widths))]
    out += [line.format(*row) for row in cells]
    return "\n".join(out)


def write_json(name: str, payload: dict) -> Path:
    path = HERE / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **payload}, indent=2, default=float))
    return path

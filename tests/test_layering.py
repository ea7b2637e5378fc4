"""methods/ and data/ are pure PyTorch: they never import Ray (house style)."""

import re
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "priorlab"
IMPORT_RAY = re.compile(r"^\s*(import ray\b|from ray\b)", re.M)


def test_no_ray_import_in_methods_or_data_sources():
    offenders = [str(p) for d in ("methods", "data") for p in (SRC / d).rglob("*.py")
                 if IMPORT_RAY.search(p.read_text())]
    assert offenders == []


def test_importing_methods_and_data_does_not_load_ray():
    modules = sorted(
        "priorlab." + ".".join(p.relative_to(SRC).with_suffix("").parts)
        for d in ("methods", "data") for p in (SRC / d).rglob("*.py")
        if p.name != "__init__.py"
    )
    code = ("import sys, importlib\n"
            f"for m in {modules!r}: importlib.import_module(m)\n"
            "print('ray' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"

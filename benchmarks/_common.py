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


def train_and_save(fit, name: str, method: str, ckpt_dir: str) -> tuple[float, Path]:
    """Run a step-at-a-time fit (``methods.fields.stepfit.StepFit``) to ``fit.cfg.steps``, printing
    progress every 50 steps, and save its checkpoint under ``ckpt_dir/name`` (kept if there);
    returns (wall seconds of training, the checkpoint folder)."""
    from priorlab.methods.checkpoint import save_checkpoint
    from priorlab.methods.configuration import config_to_dict

    cfg = fit.cfg
    started, losses = time.perf_counter(), []
    while fit.step < cfg.steps:
        losses.append(fit.train_step())
        if fit.step % 50 == 0 or fit.step == cfg.steps:
            recent = losses[-50:]
            print(f"[{name}] step {fit.step}/{cfg.steps}  loss {sum(recent) / len(recent):.4f}"
                  f"  {fit.seconds / fit.step:.2f} s/step", flush=True)
    train_s = time.perf_counter() - started
    folder = Path(ckpt_dir) / name / f"checkpoint_{fit.step:09d}"
    if not folder.exists():
        save_checkpoint(folder, method=method, step=fit.step, config=config_to_dict(cfg),
                        model=fit.model, optimizer=fit.optimizer, extra_state=fit.train_state())
    return train_s, folder


def interval(values, digits: int = 3) -> dict:
    """{"mean", "ci95" (95% t-interval half-width), "n"} of ``values`` (``platform.stats``)."""
    from priorlab.platform.stats import mean_ci95

    ci = mean_ci95(list(values))
    return {"mean": round(ci.mean, digits), "ci95": round(ci.half_width, digits), "n": ci.n}

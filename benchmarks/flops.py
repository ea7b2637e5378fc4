"""Benchmark 1: forward GFLOPs per time step of the paper-size CL+LSTM (thesis Sec. 2.4.3: 0.40).

Counted with torch's FlopCounterMode on one step of one episode (batch 1), for each label
injection mode and for the LSTM baseline. Target: within 15% of 0.40 for the paper model.

    python benchmarks/flops.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import table, write_json  # noqa: E402

from priorlab.methods.memory.cl_lstm import build_model  # noqa: E402
from priorlab.methods.memory.config import MemoryConfig  # noqa: E402

THESIS_GFLOPS = 0.40


def gflops_per_step(cfg: MemoryConfig) -> float:
    if cfg.model == "lstm":
        # torch's counter does not see the fused nn.LSTM kernel: count its matmuls by hand.
        inp, h = cfg.image_size ** 2 + cfg.n_way, cfg.lstm_hidden
        return (2 * 4 * h * (inp + h) + 2 * h * cfg.n_way) / 1e9
    model = build_model(cfg).eval()
    x = torch.rand(1, 1, 1, cfg.image_size, cfg.image_size)
    y = torch.zeros(1, 1, dtype=torch.long)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x, y)
    return counter.get_total_flops() / 1e9


def main() -> None:
    rows = []
    for name, kw in [("CL+LSTM first (paper)", {}), ("CL+LSTM every", {"label_injection": "every"}),
                     ("CL+LSTM lstm", {"label_injection": "lstm"}), ("LSTM baseline", {"model": "lstm"})]:
        cfg = MemoryConfig(**kw)
        g = gflops_per_step(cfg)
        params = sum(p.numel() for p in build_model(cfg).parameters())
        rows.append({"model": name, "params": params, "gflops_per_step": round(g, 4),
                     "ratio_to_thesis": round(g / THESIS_GFLOPS, 3)})
    print(table(rows, list(rows[0])))
    paper = rows[0]["ratio_to_thesis"]
    ok = abs(paper - 1) <= 0.15
    print(f"paper model: {rows[0]['gflops_per_step']} GFLOPs vs thesis {THESIS_GFLOPS}: "
          f"ratio {paper} -> {'PASS' if ok else 'FAIL'} (target within 15%)")
    print("wrote", write_json("flops", {"thesis_gflops": THESIS_GFLOPS, "rows": rows, "pass": ok}))


if __name__ == "__main__":
    main()

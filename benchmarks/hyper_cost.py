"""Issue 3 benchmarks 1-2: inference latency of an exported HyperResNet-18 vs a plain ResNet-18,
and the training-step cost of each sharing scheme relative to the plain network.

Thesis Sec. 3.4 / Tables 3.3-3.4: after reparameterisation a hypernetwork costs nothing extra at
inference. Target for (1): latency ratio 1.00 +- 0.05. Interleaved timing (median of
alternating repeats) so that drifting machine load hits both networks equally.

    python benchmarks/hyper_cost.py [--batch 32] [--repeats 15]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import table, write_json  # noqa: E402

from priorlab.methods.hyper.config import HyperConfig  # noqa: E402
from priorlab.methods.hyper.export import export_plain  # noqa: E402
from priorlab.methods.hyper.hypernet import output_l2  # noqa: E402
from priorlab.methods.hyper.resnets import build_model  # noqa: E402


def timed(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def interleaved(fns: dict, repeats: int, warmup: int = 2) -> dict[str, float]:
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    samples = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            samples[k] += timed(fn, 1)
    return {k: statistics.median(v) for k, v in samples.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=15)
    args = ap.parse_args()
    torch.manual_seed(0)
    x = torch.rand(args.batch, 3, 32, 32)
    y = torch.randint(0, 10, (args.batch,))

    # 1. inference latency: exported HyperResNet-18 vs plain ResNet-18 (eval, no grad)
    hyper = build_model(HyperConfig(arch="resnet18", sharing="unshared")).eval()
    exported = export_plain(hyper).eval()
    plain = build_model(HyperConfig(arch="resnet18", hyper=False)).eval()
    with torch.no_grad():
        assert torch.allclose(exported(x), hyper(x), atol=1e-4)
        lat = interleaved({"plain": lambda: plain(x), "exported": lambda: exported(x),
                           "hyper (not exported)": lambda: hyper(x)}, args.repeats)
    ratio = lat["exported"] / lat["plain"]
    rows1 = [{"network": k, "latency_ms": f"{v * 1e3:.1f}", "vs plain": f"{v / lat['plain']:.3f}"}
             for k, v in lat.items()]
    print(table(rows1, list(rows1[0])))
    ok = abs(ratio - 1) <= 0.05
    print(f"exported/plain latency ratio {ratio:.3f} -> {'PASS' if ok else 'FAIL'} (target 1.00 +- 0.05)\n")

    # 2. training-step cost per sharing scheme (forward + backward + SGD step, output L2 included)
    nets = {"plain": build_model(HyperConfig(arch="resnet18", hyper=False))}
    for sharing in ("global", "stage", "unshared"):
        nets[sharing] = build_model(HyperConfig(arch="resnet18", sharing=sharing))
    steps = {}
    for name, net in nets.items():
        opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)

        def step(net=net, opt=opt, hyper=name != "plain"):
            loss = F.cross_entropy(net(x), y)
            if hyper:
                loss = loss + 6.25e-5 * output_l2(net)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        steps[name] = step
    cost = interleaved(steps, max(3, args.repeats // 3), warmup=1)
    rows2 = [{"network": k, "step_ms": f"{v * 1e3:.0f}", "vs plain": f"{v / cost['plain']:.2f}",
              "params": sum(p.numel() for p in nets[k].parameters())} for k, v in cost.items()]
    print(table(rows2, list(rows2[0])))
    print("wrote", write_json("hyper_cost", {
        "batch": args.batch, "latency_s": lat, "latency_ratio": ratio, "latency_pass": ok,
        "train_step_s": cost}))


if __name__ == "__main__":
    main()

"""CPU probe: CL U-Net label injection at layer 1 vs 9 on Omniglot-composited episodes."""
import sys, time, json, os
import torch
from priorlab.data.episodes import episode_seed
from priorlab.data.root import resolve_data_root
from priorlab.data.segmentation import OnlineSegmentationSampler, load_segmentation_source
from priorlab.methods.memory.segmentation import SegmentationConfig
from priorlab.methods.memory.segmentation_loop import (
    SegmentationLearner, curriculum_batches, evaluate_segmentation, train)

layer, iters, curr, size, width = (int(a) for a in sys.argv[1:6])
model = sys.argv[6] if len(sys.argv) > 6 else "cl_unet"
torch.set_num_threads(int(os.environ.get("THREADS", "1")))
root = resolve_data_root()
t0 = time.perf_counter()
src_tr = load_segmentation_source("omniglot", root, "train", image_size=size)
src_va = load_segmentation_source("omniglot", root, "val", image_size=size)
print(f"sources loaded {time.perf_counter()-t0:.1f}s", flush=True)
cfg = SegmentationConfig(model=model, source="omniglot", injection_layer=layer, image_size=size,
                         channels=width, max_iters=iters, curriculum_steps=curr,
                         eval_every=iters, eval_episodes=48, seed=0)
plain = OnlineSegmentationSampler(src_tr, cfg.n_targets, 0)
full = OnlineSegmentationSampler(src_tr, cfg.n_targets, cfg.n_distractors)
val = OnlineSegmentationSampler(src_va, cfg.n_targets, cfg.n_distractors)
learner = SegmentationLearner(cfg)
batches = curriculum_batches(plain, full, cfg)
losses, tt = [], {"data": 0.0, "step": 0.0}
def timed_batches(step, d):
    t = time.perf_counter(); b = batches(step, d); tt["data"] += time.perf_counter() - t; return b
seeds = [episode_seed(12345, i) for i in range(cfg.eval_episodes)]
t_start = time.perf_counter()
# log every 50 iterations with a cheap loss print
orig = learner.train_step
def step_logged(x, y):
    t = time.perf_counter(); l = orig(x, y); tt["step"] += time.perf_counter() - t
    losses.append(l)
    if learner.step % 50 == 0:
        print(f"step {learner.step} loss {sum(losses[-50:])/len(losses[-50:]):.3f} "
              f"elapsed {time.perf_counter()-t_start:.0f}s", flush=True)
    return l
learner.train_step = step_logged
out = {}
def report(m, save): out.update(m)
t_ev = {}
def ev(l):
    t = time.perf_counter(); m = evaluate_segmentation(l, val, seeds, batch_size=16); t_ev["s"] = time.perf_counter() - t; return m
train(learner, timed_batches, evaluate_fn=ev, report=report)
wall = time.perf_counter() - t_start
print(json.dumps({k: round(v, 4) for k, v in out.items()}, indent=0))
print(f"model={model} layer={layer} iters={iters} curriculum={curr} size={size} width={width} "
      f"wall={wall:.0f}s train_step_s={tt['step']/iters:.3f} data_s={tt['data']/iters:.3f} eval_s={t_ev['s']:.1f}")

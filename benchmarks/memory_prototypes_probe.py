"""A learning probe of the prototype baselines (issue 12, first part): OPN or CPM on 5-way
5-shot Omniglot episodes (train split), k-shot accuracy on 100 `val` episodes every 200 steps.
32-channel CNN, CPM's context LSTM 400, meta-batch 8, Adam 1e-3, 2 threads.
Output: benchmarks/logs/memory_{opn,cpm}_probe.log

    PRIORLAB_DATA_DIR=... python benchmarks/memory_opn_probe.py [opn|cpm]
"""
import sys, time, torch
torch.set_num_threads(2)
from priorlab.data.episodes import OnlineEpisodeSampler
from priorlab.data.omniglot import load_omniglot_split
from priorlab.data.root import resolve_data_root
from priorlab.methods.memory.config import MemoryConfig
from priorlab.methods.memory.loop import MemoryLearner, evaluate, to_inputs
from priorlab.trainables.streams import local_batches
root = resolve_data_root()
cfg = MemoryConfig(model=sys.argv[1] if len(sys.argv) > 1 else "opn", channels=32, n_shot=5, report_shots=[1, 2, 4], meta_batch=8, lr=1e-3)
tr = OnlineEpisodeSampler(load_omniglot_split(root, "train", progress=False), cfg.n_way, cfg.n_shot)
va = OnlineEpisodeSampler(load_omniglot_split(root, "val", progress=False), cfg.n_way, cfg.n_shot)
learner = MemoryLearner(cfg)
batches = local_batches(tr, base_seed=0, start_step=0, meta_batch=cfg.meta_batch)
t0 = time.perf_counter()
print("step 0", evaluate(learner.model, va, list(range(100)), cfg.report_shots), flush=True)
for step in range(1, 601):
    x, y = next(batches); loss = learner.train_step(*to_inputs(x, y, learner.device))
    if step % 200 == 0:
        m = evaluate(learner.model, va, list(range(100)), cfg.report_shots)
        print(step, round(time.perf_counter() - t0), round(loss, 3), {k: round(v, 3) for k, v in m.items() if "ci" not in k}, flush=True)

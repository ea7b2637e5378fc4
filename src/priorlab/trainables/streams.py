"""Ray Data streams of online few-shot episodes (thesis Sec. 2.3.1; house style: Ray lives here).

An episode is a pure function of its seed (``priorlab.data.episodes``), so the stream is just a
range of episode indices mapped through the same sampler that unit tests and evaluation use
without Ray. A run resumed at step s builds the stream from episode ``s * meta_batch`` and sees
exactly the episodes an uninterrupted run would have seen.

    ds = episode_dataset(data_root, "train", n_way=5, n_shot=10, image_size=28,
                         base_seed=0, start_step=0, n_steps=1000, meta_batch=16)
    # in a Train worker: ray.train.get_dataset_shard("train").iter_batches(...)
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import ray
import ray.data

from priorlab.data.episodes import OnlineEpisodeSampler, episode_seed
from priorlab.data.fewshot_sources import EPISODE_DATASETS, load_episode_classes


def step_seeds(base_seed: int, step: int, meta_batch: int) -> list[int]:
    """Seeds of the episodes of training step ``step``: episodes step*B .. step*B + B - 1."""
    return [episode_seed(base_seed, i) for i in range(step * meta_batch, (step + 1) * meta_batch)]


class EpisodeDatasource(ray.data.Datasource):
    """Episodes ``first_step * meta_batch ...`` as a Ray Data source, one block per meta-batch.

    Each read task loads the split from the decoded cache (fast) and yields the meta-batches
    of a contiguous range of steps. Generating in read tasks (rather than a range + map actor)
    keeps every piece of the pipeline at a fractional CPU: a whole-CPU read task deadlocks
    two trials on a 2-core machine (see ../shared/STACK_NOTES.md).

    A read task covers ``steps_per_task`` steps (250): with two trials on two cores the raylet
    keeps few idle workers, so a read task often starts a new worker process (imports, the
    split loaded again); at 25 steps a task that churn took a third of a core per trial while
    a 14x14 meta-batch of 32 episodes takes 4 ms to sample.
    """

    def __init__(self, data_root: str, split: str, *, n_way: int, n_shot: int, image_size: int,
                 base_seed: int, first_step: int, n_steps: int, meta_batch: int,
                 steps_per_task: int = 250, dataset: str = "omniglot"):
        self.args = dict(data_root=data_root, split=split, n_way=n_way, n_shot=n_shot,
                         image_size=image_size, dataset=dataset)
        self.base_seed, self.first_step, self.n_steps = base_seed, first_step, max(n_steps, 0)
        self.meta_batch, self.steps_per_task = meta_batch, steps_per_task
        self.episode_bytes = n_way * n_shot * (EPISODE_DATASETS[dataset] * image_size ** 2 + 8)

    def estimate_inmemory_data_size(self) -> int:
        return self.n_steps * self.meta_batch * self.episode_bytes

    def get_read_tasks(self, parallelism: int, per_task_row_limit=None, data_context=None):
        from ray.data.block import BlockAccessor, BlockMetadata
        from ray.data.datasource import ReadTask

        tasks = []
        for lo in range(0, self.n_steps, self.steps_per_task):
            count = min(self.steps_per_task, self.n_steps - lo)
            first = self.first_step + lo

            def read(first=first, count=count, args=self.args, base_seed=self.base_seed,
                     meta_batch=self.meta_batch):
                sampler = OnlineEpisodeSampler(
                    load_episode_classes(args["data_root"], args["dataset"], args["split"],
                                         args["image_size"]),
                    args["n_way"], args["n_shot"])
                for step in range(first, first + count):
                    x, y = sampler.sample_batch(step_seeds(base_seed, step, meta_batch))
                    yield BlockAccessor.batch_to_block(
                        {"x": x, "y": y, "step": np.full(meta_batch, step, dtype=np.int64)})

            rows = count * self.meta_batch
            meta = BlockMetadata(num_rows=rows, size_bytes=rows * self.episode_bytes,
                                 input_files=None, exec_stats=None)
            tasks.append(ReadTask(read, meta, per_task_row_limit=per_task_row_limit))
        return tasks


def episode_dataset(
    data_root: str, split: str, *, n_way: int, n_shot: int, image_size: int, base_seed: int,
    start_step: int, n_steps: int, meta_batch: int, num_cpus: float = 0.25,
    dataset: str = "omniglot",
) -> "ray.data.Dataset":
    """Episodes ``start_step * meta_batch ...`` of a run, ``meta_batch`` per training step.

    ``num_cpus`` is each read task's share; one read task runs at a time per dataset.
    """
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True  # step i always trains on the same episodes
    ctx.enable_progress_bars = False  # Tune prints progress; per-operator bars flood the log
    source = EpisodeDatasource(
        data_root, split, n_way=n_way, n_shot=n_shot, image_size=image_size,
        base_seed=base_seed, first_step=start_step, n_steps=n_steps, meta_batch=meta_batch,
        dataset=dataset)
    return ray.data.read_datasource(source, num_cpus=num_cpus, concurrency=1)


def local_batches(
    sampler: OnlineEpisodeSampler, *, base_seed: int, start_step: int, meta_batch: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The same stream without Ray: meta-batch ``i`` holds episodes ``i*B .. i*B+B-1``."""
    step = start_step
    while True:
        yield sampler.sample_batch(step_seeds(base_seed, step, meta_batch))
        step += 1


def shard_batches(shard, batch_size: int, start_step: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(x, y) batches from a Train dataset shard, skipping steps a restored model already took."""
    for batch in shard.iter_batches(batch_size=batch_size, batch_format="numpy", prefetch_batches=2):
        if int(batch["step"].max()) < start_step:
            continue
        yield batch["x"], batch["y"]

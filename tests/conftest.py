"""Test session setup: no traffic off the machine, the real data root, one Ray per run."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from priorlab.platform.runtime import apply_offline_env

REPO = Path(__file__).resolve().parents[1]

# Before anything can start Ray: its start-up probes go to a closed loopback port.
apply_offline_env()
# The data root: $PRIORLAB_DATA_DIR if set; else a ../shared/datasets beside this checkout (these
# machines); else the normal default (~/.cache/priorlab), which `make test` fills first with
# `priorlab data download omniglot`. Same rule as scripts/offline-env.sh.
_SHARED_DATA = REPO.parent / "shared" / "datasets"
if _SHARED_DATA.is_dir():
    os.environ.setdefault("PRIORLAB_DATA_DIR", str(_SHARED_DATA))
# Decoded caches go to a per-run temp dir, never into the (read-only) data root.
os.environ.setdefault("PRIORLAB_CACHE_DIR", tempfile.mkdtemp(prefix="priorlab-cache-"))
os.environ.setdefault("RAY_TRAIN_ENABLE_PRINT_PATCH", "0")


@pytest.fixture(scope="session")
def data_root() -> Path:
    from priorlab.data.root import resolve_data_root

    return resolve_data_root()


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray for every integration test of the run."""
    import ray

    from priorlab.platform import runtime

    rt = runtime.start(num_cpus=2)
    yield rt
    ray.shutdown()


TINY = dict(channels=4, lstm_hidden=16, n_shot=3, report_shots=[1, 2], meta_batch=2,
            eval_episodes=4, eval_every=2, max_iters=4)


@pytest.fixture
def tiny_memory_config() -> dict:
    return dict(TINY)


def _write_pacs(root, per_class=1, size=(12, 10)):
    """A tiny PACS in its published layout: pacs/<domain>/<class>/<i>.jpg (random pixels)."""
    import numpy as np
    from PIL import Image

    from priorlab.data.images import PACS_CLASSES, PACS_DOMAINS

    rng = np.random.default_rng(0)
    for dom in PACS_DOMAINS:
        for cls in PACS_CLASSES:
            for i in range(per_class):
                p = Path(root) / "pacs" / dom / cls / f"{i}.jpg"
                p.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(p)
    return Path(root)


@pytest.fixture
def write_pacs():
    """``write_pacs(root, per_class=1, size=(12, 10)) -> root``: a PACS fixture on disk."""
    return _write_pacs


@pytest.fixture
def one_thread():
    """Tiny models: one thread is fastest (two OpenMP threads on a 2-core machine busy with
    anything else turn millisecond steps into seconds) and steadier."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

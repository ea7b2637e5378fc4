"""Test session setup: no traffic off the machine, the real data root, one Ray per run."""

from __future__ import annotations

import io
import os
import pickle
import tarfile
import tempfile
from pathlib import Path

import numpy as np
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
# Train's controller polls its workers every 2 s, and each tiny fit of the suite waits that long at
# every state change: 0.2 s takes a no-op fit from 12.4 s to 8.2 s here (30-odd fits per run).
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")


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


# ---------------------------------------------------------------------------- molecules (Ch. 5)
# Small, well-known molecules with varied ring systems (so scaffold splits have three parts).
FIXTURE_SMILES = [
    "CC(=O)Oc1ccccc1C(=O)O", "CC(=O)Nc1ccc(O)cc1", "CC(C)Cc1ccc(C(C)C(=O)O)cc1",
    "Cn1cnc2c1c(=O)n(C)c(=O)n2C", "O=C(O)c1ccccc1O", "CN1CCC[C@H]1c1cccnc1",
    "c1ccc2ccccc2c1", "c1ccc(-c2ccccc2)cc1", "C1CCCCC1", "c1ccncc1", "c1ccoc1", "c1ccsc1",
    "C1CCNCC1", "C1COCCN1", "c1ccc2[nH]ccc2c1", "c1ccc2ncccc2c1", "O=C1CCCCC1",
    "CCOC(=O)c1ccccc1N", "Clc1ccc(Cl)cc1", "Fc1ccccc1F", "Brc1cccnc1", "OC1CCCC1",
    "NC(=O)c1cccnc1", "CC1=CC(=O)CC(C)(C)C1", "O=S(=O)(N)c1ccc(N)cc1", "CCN(CC)CCOC(=O)c1ccc(N)cc1",
    "COc1ccc2[nH]cc(CCN)c2c1", "CC(C)NCC(O)c1ccc(O)c(O)c1", "O=C(O)CCc1ccccc1",
    "c1ccc(Nc2ccccc2)cc1", "C1CC2CCC1C2", "c1cnc2[nH]cnc2c1", "O=c1cc[nH]c(=O)[nH]1",
    "CC(=O)c1ccc2ccccc2c1", "OCC1OC(O)C(O)C(O)C1O", "CCCCCCCC(=O)O", "CCOCC", "CCN",
    "NCCc1ccc(O)c(O)c1", "CN(C)C(=N)N=C(N)N",
]


@pytest.fixture(scope="session")
def molecule_root(tmp_path_factory) -> Path:
    """A data root with a BACE-format CSV (labels from a simple rule, so heads can learn something)
    and a QM9-format CSV of small molecules, in their canonical layouts."""
    import csv

    root = tmp_path_factory.mktemp("molecule-data")
    (root / "moleculenet").mkdir()
    with open(root / "moleculenet" / "bace.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["mol", "CID", "Class", "Model", "pIC50"])
        for i, s in enumerate(FIXTURE_SMILES):
            label = int("N" in s or "n" in s)
            part = ("Train", "Valid", "Test")[0 if i % 5 < 3 else (1 if i % 5 == 3 else 2)]
            w.writerow([s, f"BACE_{i}", label, part, 5.0 + label])
    (root / "qm9").mkdir()
    qm9 = ["C", "N", "O", "CC", "CO", "CN", "C#C", "C=O", "CCO", "CC=O", "CCN", "COC", "C1CC1",
           "CC#N", "NC=O", "OCC#C", "CC(C)C", "CC(C)O", "C1CO1", "CCCO", "NCC=O", "OC=O",
           "CC(=O)O", "C1CCC1", "CNC", "FC(F)F", "CC(F)F", "OCCO", "NCCN", "C=CC=O"] * 2
    with open(root / "qm9" / "qm9.csv", "w") as f:
        f.write("smiles\n" + "\n".join(qm9) + "\n")
    return root


@pytest.fixture(scope="session")
def tiny_diffusion_checkpoint(tmp_path_factory) -> Path:
    """A molecules-pretrain checkpoint of a tiny, randomly initialised diffusion model whose
    vocabulary covers the fixture molecules (heavy atoms: C, N, O, F, S, Cl, Br)."""
    import torch

    from priorlab.data.molecules import ConformerParams, generate_conformers
    from priorlab.methods.checkpoint import save_checkpoint
    from priorlab.methods.configuration import config_to_dict
    from priorlab.methods.molecules.config import PretrainConfig
    from priorlab.methods.molecules.diffusion import MolecularDiffusion
    from priorlab.methods.molecules.graphs import DRUGS_VOCAB, encode_record, marginals

    torch.manual_seed(0)
    graphs = [encode_record(r, DRUGS_VOCAB) for s in FIXTURE_SMILES[:12]
              for r in generate_conformers(s, ConformerParams()) if r["status"] == "ok"]
    model = MolecularDiffusion(DRUGS_VOCAB, marginals(graphs, DRUGS_VOCAB), T=50,
                               denoiser=dict(n_layers=2, hidden=16, edge_hidden=8))
    cfg = PretrainConfig(dataset="moses", with_hydrogens=False, n_layers=2, hidden=16,
                         edge_hidden=8, diffusion_steps=50)
    folder = tmp_path_factory.mktemp("tiny-midi") / "checkpoint_000000001"
    save_checkpoint(folder, method="molecules-pretrain", step=1, config=config_to_dict(cfg),
                    model=model, spec=model.to_spec())
    return folder


def _add_pickle(tar, name, obj):
    raw = pickle.dumps(obj, protocol=2)
    info = tarfile.TarInfo(name)
    info.size = len(raw)
    tar.addfile(info, io.BytesIO(raw))


def _cifar_images(labels, seed):
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, (len(labels), 3 * 32 * 32), dtype=np.uint8)
    data[:, 0] = labels  # the red value of pixel (0, 0) carries the label, to check alignment
    return data


@pytest.fixture
def cifar_root(tmp_path, monkeypatch):
    """A data root with CIFAR-10/100 tarballs in the canonical python format: 3 train + 1 test
    images per CIFAR-100 class, the label in the red value of pixel (0, 0)."""
    from priorlab.data.cifar import read_fewshot_split

    monkeypatch.setenv("PRIORLAB_CACHE_DIR", str(tmp_path / "cache"))
    # The fixture root has no splits/ folder: the packaged CIFAR-FS lists name the classes.
    pairs = sum((read_fewshot_split(tmp_path, "cifar-fs", s) for s in ("train", "val", "test")), [])
    fine = sorted(c for _, c in pairs)
    coarse = sorted({s for s, _ in pairs})
    coarse_of = {c: coarse.index(s) for s, c in pairs}
    (tmp_path / "cifar").mkdir()
    with tarfile.open(tmp_path / "cifar" / "cifar-100-python.tar.gz", "w:gz") as tar:
        for split, per_class, seed in (("train", 3, 0), ("test", 1, 1)):
            labels = np.repeat(np.arange(100), per_class)
            _add_pickle(tar, f"cifar-100-python/{split}", {
                b"data": _cifar_images(labels, seed), b"fine_labels": labels.tolist(),
                b"coarse_labels": [coarse_of[fine[l]] for l in labels]})
        _add_pickle(tar, "cifar-100-python/meta", {b"fine_label_names": [n.encode() for n in fine],
                                            b"coarse_label_names": [n.encode() for n in coarse]})
    with tarfile.open(tmp_path / "cifar" / "cifar-10-python.tar.gz", "w:gz") as tar:
        for i in range(1, 6):
            labels = np.arange(10)
            _add_pickle(tar, f"cifar-10-batches-py/data_batch_{i}", {b"data": _cifar_images(labels, i), b"labels": labels.tolist()})
        _add_pickle(tar, "cifar-10-batches-py/test_batch", {b"data": _cifar_images(np.arange(10), 9), b"labels": list(range(10))})
        _add_pickle(tar, "cifar-10-batches-py/batches.meta", {b"label_names": [f"c{i}".encode() for i in range(10)]})
    return tmp_path

"""Find the checkpoint a user means: `priorlab eval` takes whatever folder is at hand.

Accepted, in this order:

1. a checkpoint folder (it holds ``meta.json``): used as it is;
2. an experiment folder written by ``priorlab sweep`` (it holds ``study.json``): the best
   finished trial by the study's metric (ERROR trials never count), its latest checkpoint;
3. a trial's run folder (``EXPERIMENT/train_runs/train_<trial>``, or a ``priorlab train`` run
   folder): its latest complete checkpoint (the highest step whose ``meta.json`` reads).

Anything else raises :class:`CheckpointError` listing these three forms.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from priorlab.methods.checkpoint import META, CheckpointError, read_meta

FORMS = ("a checkpoint folder (EXPERIMENT/train_runs/train_<trial>/checkpoint_<step>), a trial's "
         "run folder (EXPERIMENT/train_runs/train_<trial>, or runs/train/<name>), or an experiment "
         "folder (runs/<study>-<date>)")


@dataclass
class Located:
    checkpoint: Path
    how: str
    """One line saying which checkpoint was chosen and why (printed by `priorlab eval`)."""


def latest_checkpoint(run_dir: Path) -> tuple[Path | None, list[str]]:
    """(checkpoint folder with the highest step or None, damaged folders skipped) under
    ``run_dir`` or its child folders."""
    candidates = sorted(set(run_dir.glob("checkpoint_*")) | set(run_dir.glob("*/checkpoint_*")))
    best, best_step, skipped = None, -1, []
    for path in candidates:
        if not (path / META).is_file():
            continue  # a checkpoint being written (temporary) or not a checkpoint
        try:
            step = read_meta(path)["step"]
        except CheckpointError:
            skipped.append(str(path))
            continue
        if step > best_step:
            best, best_step = path, step
    return best, skipped


def _best_trial(experiment: Path) -> Located:
    from priorlab.platform.results import ResultsStore
    from priorlab.platform.studies import get_study

    info = json.loads((experiment / "study.json").read_text())
    study = get_study(info["study"])
    df = ResultsStore(experiment).read()
    if df.empty:
        raise CheckpointError(f"{experiment} has no finished trials yet; pass a trial's run folder "
                              f"under {experiment / 'train_runs'} instead")
    ok = df[df["status"] != "ERROR"]
    if study.metric not in ok.columns or ok[study.metric].dropna().empty:
        raise CheckpointError(f"no finished trial of {experiment} reported {study.metric}; pass a "
                              f"trial's run folder under {experiment / 'train_runs'} instead")
    ok = ok.dropna(subset=[study.metric])
    row = ok.loc[ok[study.metric].idxmax() if study.mode == "max" else ok[study.metric].idxmin()]
    run_dir = experiment / "train_runs" / f"train_{row['trial_id']}"
    found = latest_checkpoint(run_dir)
    if found[0] is None:
        path = row.get("checkpoint_path")
        if isinstance(path, str) and path and (Path(path) / META).is_file():
            found = (Path(path), [])
        else:
            raise CheckpointError(f"the best trial {row['trial_id']} of {experiment} has no "
                                  f"checkpoint left under {run_dir}")
    value = row[study.metric]
    shown = f"{value:.4f}" if isinstance(value, float) and not math.isnan(value) else str(value)
    failed = int((df["status"] == "ERROR").sum())
    note = f"; {failed} failed trial(s) not considered" if failed else ""
    return Located(found[0], f"best finished trial {row['trial_id']} of {len(ok)} by {study.metric} "
                             f"= {shown} ({study.mode}){note}: {found[0]}")


def locate_checkpoint(path: str | Path) -> Located:
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"{path} does not exist or is not a folder; pass {FORMS}")
    if (path / META).is_file():
        return Located(path, f"checkpoint {path}")
    if (path / "study.json").is_file():
        return _best_trial(path)
    best, skipped = latest_checkpoint(path)
    if best is not None:
        note = f" (skipped damaged: {', '.join(skipped)})" if skipped else ""
        return Located(best, f"latest checkpoint of {path}: {best.name}{note}")
    if skipped:
        read_meta(skipped[-1])  # every checkpoint there is damaged: say how (raises)
    raise CheckpointError(f"{path} holds no priorlab checkpoint; pass {FORMS}")

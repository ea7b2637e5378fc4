"""What a study is: a trainable, the space it sweeps, its searcher, scheduler and report layout.

A study's metrics are whatever its method reports (accuracy, PSNR, AUROC); the report reads
``metric``, ``group_by`` and ``curve`` from here, so the results store and the report need no
per-method code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass(frozen=True)
class Study:
    name: str
    description: str
    method: str
    """The checkpoint ``method`` tag (``priorlab eval`` dispatches on it)."""
    config_cls: type
    """The method's config dataclass: search-space keys and overrides must be its fields."""
    trainable: Callable[[dict[str, Any]], None]
    """A Tune function trainable (a ``train_driver_fn``)."""
    budget: dict[str, Any]
    """Config overrides that make the study's default budget (small enough for a laptop)."""
    space: Callable[..., dict[str, Any]]
    """``space(fixed=None)``: the Tune search space, config field name -> tune.choice/
    loguniform/grid_search/...; given the fixed config (budget + overrides) a study may leave out
    choices that coincide under it. A space of ``tune.choice``s only is run as a grid of every
    combination, ``--samples`` seeds each (see ``platform.sweep``)."""
    metric: str
    mode: str
    group_by: tuple[str, ...]
    """The swept architecture choice(s) the report groups by."""
    curve: Callable[[dict[str, Any]], dict[float, str]]
    """Given the trial config, x -> metric key for the report's plot (e.g. shot -> eval/acc_kshot)."""
    curve_label: str
    make_searcher: Callable[..., Any]
    """``make_searcher(seed, space, storage=None, study_name=None)``: given the seed and the space
    actually searched (the user may pin some keys), the searcher; an Optuna searcher keeps its
    study in ``storage`` under ``study_name`` (the experiment's ``optuna.db``, see
    ``platform.tracking``). None: Tune's variant generator (grids)."""
    make_scheduler: Callable[[int], Any]
    """Given max_t (the number of reports a full trial makes), the trial scheduler."""
    reports_per_trial: Callable[[dict[str, Any]], int] = lambda fixed: 1
    """How many reports a full trial makes, given the fixed config (ASHA's max_t)."""
    prepare_data: Callable[[Any, dict[str, Any]], None] | None = None
    """Checks the data is there and warms caches in the driver (data_root, fixed config)."""
    default_samples: int = 4
    extra_columns: tuple[str, ...] = field(default=())
    iters_key: str = "max_iters"
    """The config field `--max-iters` sets (the length of a trial: iterations, epochs...)."""
    tables: Callable[[Any, dict[str, Any]], list] | None = None
    """The thesis-shaped tables of `priorlab report`: (results DataFrame, fixed config) ->
    list of ``platform.report.ReportTable`` (cells from ``platform.stats``: ``interval_table``
    for mean ± 95% t-interval over seeds, ``paired_effect`` for matched differences)."""
    history_curve: tuple[str, str] | None = None
    """(x, metric) columns of history.parquet to plot per group as validation curves
    (e.g. ("iteration", "eval/cross/acc") for Fig. 3.6); None: no curve plot."""
    progress_metric: str = "step"
    """The reported metric that says how far a trial got, in ``iters_key`` units (``step``,
    ``iteration``, ``epoch``): the report compares choices at equal values of it, history rows
    are keyed by it, and `priorlab train` draws its progress bar with it."""
    train_point: dict[str, Any] = field(default_factory=dict)
    """Values of searched keys for `priorlab train` (a single run): the study's reference choice
    where the method's own defaults (the paper's) do not fit the laptop budget."""
    chance: Callable[[dict[str, Any]], float | None] = lambda config: None
    """Chance level of the study metric for a config (e.g. 1 / n_way), drawn on the plot; None: none."""
    trial_interval: str = "evaluation episodes"
    """What a trial's own ``<metric>_ci95`` is an interval over (printed under the report's table)."""
    resolve: Callable[[dict[str, Any]], dict[str, Any]] = lambda config: config
    """Applied to the fixed config in the launching process (``train``/``sweep``), before trials
    start in their own folders: e.g. relative local paths made absolute."""


def grid_searcher(seed: int, space: dict[str, Any], storage=None, study_name: str | None = None):
    """``make_searcher`` of grid studies: None = Tune's basic variant generator runs the grid."""
    return None


def fifo_scheduler(max_t: int):
    """``make_scheduler`` of studies that run every trial to the end (ablations): FIFO."""
    return None

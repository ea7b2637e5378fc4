"""`priorlab reproduce`: which thesis table or figure each study regenerates, at three budgets.

Every entry of :data:`TARGETS` names a table or figure of the thesis (Ch. 2: Table 2.1, 2.2, A.1,
Fig. 2.2-2.4 and the delayed-label claim of Sec. 2.1; Ch. 3: Tables 3.1-3.3, 3.5-3.8, Fig. 3.5,
3.6; Ch. 4: Fig. 4.9-4.11; Ch. 5: Table 5.1), the study that regenerates it, the overrides that
select its setting, and three budgets:

* ``smoke``: tiny sizes, a few steps, 1-2 seeds. Proves that data, trainable, sweep and report
  run end to end; its numbers are noise and settle nothing.
* ``cpu``: the study's own laptop budget (``Study.budget``) and default seeds.
* ``paper``: the thesis' settings as overrides (image size, widths, iterations; from the thesis
  and the studies' docstrings), for a machine with the hardware. Every key the laptop budget
  sets is set again here, so no laptop setting leaks into a "paper" run.

Each budget says what it can settle (``settles``, pointing to ``benchmarks/RESULTS.md`` where a
run was made), and each target carries the thesis' own numbers or claim, labelled as the
thesis'. Running a target is ``platform.sweep.run_sweep`` plus those two texts after the study's
report (which has our mean ± 95% interval, and the thesis' column where the study has one)::

    priorlab reproduce                                  # the list
    priorlab reproduce table-2.1                        # one target: thesis, budgets, overrides
    priorlab reproduce table-2.1 --budget cpu [--dry-run]

Nothing here imports Ray or a study until a target is checked or run (`docs/reproduce.md`).
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BUDGETS = ("smoke", "cpu", "paper")
SMOKE_SETTLES = "nothing (tiny models, a few steps: it proves the pipeline runs end to end)"


class ReproduceError(ValueError):
    """A target, budget or argument that `priorlab reproduce` cannot run, with what to do."""


@dataclass(frozen=True)
class Budget:
    overrides: dict[str, Any]
    """Config overrides on top of the study's laptop budget (and the target's ``select``)."""
    samples: int
    """``--samples`` of the sweep: seeds where the sweep turns samples into seeds, else 1."""
    seeds: int
    """Distinct seeds the sweep runs (from ``samples``, or from a seed grid in the study's space)."""
    settles: str
    cost: str = ""
    """Rough cost where known, with where it was measured."""
    needs: dict[str, str] = field(default_factory=dict)
    """Config keys the user must pass as key=value (paths), each with how to get one."""


@dataclass(frozen=True)
class Target:
    id: str
    where: str
    """The thesis' table / figure and section."""
    title: str
    study: str
    thesis: str
    """The thesis' numbers or claim, as the thesis states them."""
    smoke: Budget
    cpu: Budget
    paper: Budget
    select: dict[str, Any] = field(default_factory=dict)
    """Overrides that select the target's setting, applied at every budget."""
    compares: tuple[str, ...] = ()
    """The config keys the thesis' table varies: the cpu and paper budgets leave them to the
    study's grid (a test checks that none of them is pinned)."""
    measured: str = ""
    """Result files of the last run here (``benchmarks/``), if any."""

    def budget(self, name: str) -> Budget:
        if name not in BUDGETS:
            raise ReproduceError(f"--budget {name}: choose one of {', '.join(BUDGETS)}")
        return getattr(self, name)


# ------------------------------------------------------------------ shared budget pieces (Ch. 2)
MEMORY_TINY = dict(channels=4, lstm_hidden=16, n_shot=3, report_shots=[1, 2], meta_batch=2,
                   eval_episodes=4, eval_every=2, max_iters=4)
# Sec. 2.3.4 / App. A.1.4: 28x28, four ConvLSTM layers of 64, LSTMs of 400, NTM 120 x 40,
# Adam 1e-3, meta-batch 16, 100k iterations; 10-shot episodes (Fig. A.1), k = 1/5/8 (Table 2.1).
MEMORY_PAPER = dict(image_size=28, conv_layers=4, channels=64, lstm_hidden=400, n_shot=10,
                    report_shots=[1, 5, 8], meta_batch=16, lr=1e-3, grad_clip=None, forget_bias=1.0,
                    lstm_forget_bias=None, memory_slots=120, memory_width=40, max_iters=100_000,
                    eval_every=1000, eval_episodes=200)
CONTINUAL_TINY = dict(image_size=14, conv_layers=2, channels=4, lstm_hidden=16, pln_hidden=8,
                      anml_channels=8, nm_channels=4, subtasks=3, curriculum_start=2,
                      curriculum_every=2, n_labels=4, n_shot=2, n_query=2, meta_batch=2, max_iters=4,
                      eval_every=2, eval_episodes=2, eval_lengths=[2])
# Sec. 2.4.3 / App. A.3 (the study's docstring): tasks up to 20 subtasks, curriculum every 5000.
CONTINUAL_PAPER = dict(image_size=28, conv_layers=4, channels=64, lstm_hidden=400, pln_hidden=400,
                       anml_channels=256, nm_channels=112, subtasks=20, n_labels=20, n_query=5,
                       curriculum_every=5000, meta_batch=16, grad_clip=None, forget_bias=1.0,
                       lstm_forget_bias=None, max_iters=100_000, eval_every=1000, eval_episodes=200,
                       eval_lengths=[5, 10, 15, 20])
# App. A.2's protocol: k-way 5-shot, support shuffled, no curriculum; depth and k are the grid's.
DEPTH_TINY = {k: v for k, v in CONTINUAL_TINY.items() if k not in ("conv_layers", "subtasks")}
DEPTH_TINY.update(order="shuffled", curriculum_start=20, n_labels=7, eval_lengths=[4])
DEPTH_PAPER = {k: v for k, v in CONTINUAL_PAPER.items() if k not in ("conv_layers", "subtasks")}
DEPTH_PAPER.update(order="shuffled", curriculum_start=20, n_labels=7, eval_lengths=[4])
SEGMENTATION_TINY = dict(source="omniglot", image_size=16, channels=2, meta_batch=1, max_iters=4,
                         curriculum_steps=2, eval_every=4, eval_episodes=2)
# Sec. 2.4.4 / App. A.4: FSS-1000 at 56x56, 100k iterations without distractors then 100k with.
SEGMENTATION_PAPER = dict(source="fss1000", image_size=56, channels=32, meta_batch=4,
                          max_iters=200_000, curriculum_steps=100_000, eval_every=1000,
                          eval_episodes=200)
# ------------------------------------------------------------------------------------ (Ch. 3)
HYPER_TINY = dict(num_classes=5, wrn_depth=10, wrn_widen=1, epochs=2, lr_milestones=[1],
                  batch_size=16, swa_start_epoch=1)
# Sec. 3.4.1: CIFAR-10, HyperWRN-28-4, SGD 0.1 for 200 epochs, / 5 at 60, 120, 160, batch 128.
HYPER_PAPER = dict(dataset="cifar10", num_classes=10, in_channels=3, arch="wrn", wrn_depth=28,
                   wrn_widen=4, epochs=200, lr_milestones=[60, 120, 160], batch_size=128,
                   swa_start_epoch=160, swa_lr=0.01)
HYPER_OTHER_CELLS = ("`dataset=cifar100 num_classes=100` gives the CIFAR-100 column, `wrn_depth=40 "
                     "wrn_widen=2` the WRN-40-2 rows")
ONE_SEED_PER_SWEEP = ("the grid's trials share one seed: repeat with seed=1, seed=2 for the "
                      "thesis' 3 runs")
MAML_TINY = dict(widths=[4, 4, 8, 8], n_query=2, meta_batch=2, inner_steps=1, eval_inner_steps=1,
                 eval_tasks=2, diag_tasks=1, pretrain_steps=2, pretrain_classes=10, pretrain_batch=8,
                 meta_iters=2, eval_every=1, k_shot=1, seed=0)
# Sec. 3.4.3; pre-training and meta-iteration counts are the study docstring's (the thesis gives none).
MAML_PAPER = dict(arch="resnet12", widths=None, pretrain_steps=20_000, pretrain_classes=0,
                  meta_iters=10_000, eval_every=100, eval_tasks=100)
MAML_TABLE_3_6 = dict(MAML_PAPER, meta_train="miniimagenet", cross_domain="", image_size=84)
MAML_TABLE_3_7 = dict(MAML_PAPER, meta_train="fc100", cross_domain="miniimagenet", image_size=32,
                      arch="wrn", wrn_depth=28, wrn_widen=4)
MAML_CPU_COST = "64.5 min wall for 12 trials on 2 cores (RESULTS.md, Issue 3 benchmark 3b)"
MAML_MEASURED = ("benchmarks/hyper_maml_cpu_tables.md, hyper_maml_cpu_{results,history}.parquet, "
                 "hyper_maml_cpu_curves.png, hyper_maml_cpu_paired.json (RESULTS.md, Issue 3 benchmark 3b)")
MAML_CPU_SETTING = ("Omniglot stands in for MiniImageNet / FC100 and scikit-learn digits for the "
                    "cross domain; 60 meta-iterations after 150 pre-training steps (~1/100 of a "
                    "thesis run), 4x narrower, curves still rising")
MAML_PAPER_SETTLES = ("Would test it at the thesis' scale (pre-training and meta-iteration counts "
                      "are the study docstring's reading; the thesis states none), 3 seeds; the data "
                      "set is not on these machines")
# ------------------------------------------------------------------------------------ (Ch. 4)
FIELDS_TINY = dict(model_dim=16, transformer_layers=1, n_heads=2, head_dim=4, hyper_hidden=8,
                   n_levels=2, log2_hashmap_size=8, finest_resolution=16, n_samples=8,
                   rays_per_prompt=32, image_size=8, eval_size=11, eval_views=1, n_prompts=2,
                   steps=4, eval_every=2, eval_scenes=2)
# App. B.1 sizes are the config's defaults; the thesis gives no step count (stage 2 "takes
# roughly two hours" on its GPU), so 2000 is the config's default, not the thesis'.
FIELDS_PAPER = dict(rays_per_prompt=1024, n_samples=48, steps=2000, eval_every=250, eval_scenes=8)
TEACHERS = ("a teacher store with the packed scenes' teachers (`priorlab farm teachers ... --store "
            "runs/teachers`; the default teachers=runs/teachers is read when you pass none); the "
            "sweep names any missing teacher before a trial starts")
FIELDS_SDS = ("the thesis' teachers and baseline use score distillation from Stable Diffusion; here "
              "teachers are reconstruction fits and `direct` fits the exact views (docs/fields.md)")
SEGFIELDS_TINY = dict(n_train_scenes=2, n_novel_scenes=1, shapes="chair;mug", context_views=2,
                      context_size=16, target_views=2, target_size=16, eval_views=1, eval_size=16,
                      encoder_width=8, token_dim=16, token_grid=2, feature_dim=4, model_dim=16,
                      transformer_layers=1, n_heads=2, head_dim=4, hyper_hidden=8, n_levels=2,
                      log2_hashmap_size=8, finest_resolution=16, n_samples=8, n_scenes=2,
                      rays_per_scene=32, steps=4, eval_every=2)
# ------------------------------------------------------------------------------------ (Ch. 5)
FEATURES_TINY = dict(n_splits=1, epochs=2, patience=2, n_boot=10, hidden=16)
MIDI = ("a molecules-pretrain checkpoint or run folder: `priorlab train molecules-pretrain "
        "dataset=moses with_hydrogens=false n_molecules=8000` (RESULTS.md, Issue 10)")


def _hyper_design(id: str, where: str, title: str, thesis: str, compares: str,
                  select: dict[str, Any], cpu_settles: str, paper_extra: dict[str, Any] | None = None,
                  paper_note: str = "") -> Target:
    """A Ch. 3 design-ablation target: the hyper-design grid with every other factor pinned at the
    thesis' recommended choice, so the sweep varies the one factor its table compares."""
    return Target(
        id=id, where=where, title=title, study="hyper-design", select=select, thesis=thesis,
        compares=(compares,),
        smoke=Budget(HYPER_TINY, samples=1, seeds=1, settles=SMOKE_SETTLES),
        cpu=Budget({}, samples=1, seeds=1, settles=cpu_settles),
        paper=Budget({**HYPER_PAPER, **(paper_extra or {})}, samples=1, seeds=1,
                     settles=(f"Would test it on CIFAR-10 with a HyperWRN-28-4{paper_note}; "
                              f"{ONE_SEED_PER_SWEEP}; {HYPER_OTHER_CELLS}. CIFAR is not on these "
                              "machines."),
                     cost="200 CIFAR epochs per trial on a GPU (not measured here)"),
        measured="benchmarks/hyper_design.json (a benchmark script, not this study's budget; "
                 "RESULTS.md, Issue 3 benchmark 3a)")


def _maml(id: str, where: str, title: str, thesis: str, cpu_settles: str,
          paper: dict[str, Any]) -> Target:
    """A Ch. 3 MAML target: the hyper-maml grid (Hyper x plain, 1 x 5 shots, 3 seeds)."""
    return Target(
        id=id, where=where, title=title, study="hyper-maml", thesis=thesis, compares=("hyper", "k_shot"),
        smoke=Budget(MAML_TINY, samples=1, seeds=1, settles=SMOKE_SETTLES),
        cpu=Budget({}, samples=1, seeds=3, settles=cpu_settles, cost=MAML_CPU_COST),
        paper=Budget(paper, samples=1, seeds=3, settles=MAML_PAPER_SETTLES,
                     cost="12 trials of 20k + 10k steps on a GPU (not measured here)"),
        measured=MAML_MEASURED)


_TARGETS = [
    # ------------------------------------------------------------------------------- Chapter 2
    Target(
        id="fig-2.2", where="Fig. 2.2, Sec. 2.3.3", study="memory-label-injection",
        compares=("label_injection",),
        title="CL+LSTM label injection: first ConvLSTM layer / every layer / the LSTM",
        thesis=("No numbers. Sec. 2.1: 'restricting adaptability to only later network layers "
                "significantly hampers performance' (the label at the first or every ConvLSTM "
                "layer vs the LSTM only)."),
        smoke=Budget(dict(MEMORY_TINY, lr=0.01), samples=2, seeds=2, settles=SMOKE_SETTLES),
        cpu=Budget(dict(lr=0.01, channels=8), samples=4, seeds=4,
                   settles=("Does not settle the order: one ConvLSTM layer, so `every` is `first` "
                            "and only first vs lstm run, 3000 steps; a seed leaves the ~0.33 "
                            "plateau anywhere between 1100 and >3000 steps (RESULTS.md, Issue 7 "
                            "item 4: first 0.630 vs lstm 0.600 1-shot, one seed each, overlapping "
                            "intervals)."),
                   cost="~7 min per 2 trials on 2 cores (RESULTS.md, Issue 7 item 4): ~30 min"),
        paper=Budget(dict(MEMORY_PAPER), samples=3, seeds=3,
                     settles=("Would test the claim: all three modes on four ConvLSTM layers of 64, "
                              "28x28, 100k iterations, 3 seeds."),
                     cost="~4.5 h per trial on one H200 (163 ms/step, RESULTS.md GPU check); 9 trials"),
        measured="benchmarks/demo_run_worktree.json, benchmarks/logs/demo_worktree.log (RESULTS.md, "
                 "Issue 7 item 4)"),
    Target(
        id="table-2.1", where="Table 2.1, Sec. 2.4.2", study="memory-baselines", compares=("model",),
        title="5-way online few-shot accuracy on Omniglot: CL+LSTM vs LSTM, NTM, APL, OPN, CPM",
        thesis=("Omniglot, 5-way, mean over 3 runs after 100k iterations, %, 1 / 5 / 8-shot: "
                "LSTM 85.3 / 94.4 / 95.8; NTM 88.7 / 96.8 / 97.3; APL 89.1 / 94.9 / 95.7; "
                "OPN 91.2 / 94.6 / 95.8; CPM 94.5 / 97.0 / 97.4; CL+LSTM 96.8 / 99.4 / 99.7. "
                "CL+LSTM is first at every shot."),
        smoke=Budget(dict(MEMORY_TINY), samples=2, seeds=2, settles=SMOKE_SETTLES),
        cpu=Budget({}, samples=3, seeds=3,
                   settles=("Does not settle the ordering: in 3000 steps the recurrent models "
                            "(CL+LSTM, LSTM, NTM) stay on the plateau near chance (0.2) while CPM, "
                            "OPN and APL learn in hundreds of steps (RESULTS.md, Issue 12: CL+LSTM "
                            "0.318 ± 0.044 vs CPM 0.904 ± 0.042 1-shot, 3 seeds). Shots are 1/2/4 "
                            "of 5, not 1/5/8 of 10."),
                   cost="18 trials of 3000 steps (wall time not recorded)"),
        paper=Budget(dict(MEMORY_PAPER), samples=3, seeds=3,
                     settles=("Would test the ordering: the thesis' sizes, Adam 1e-3, meta-batch 16 "
                              "and 100k iterations for every model (App. A.1.4), 3 seeds."),
                     cost="~4.5 h per CL+LSTM trial on one H200 (RESULTS.md GPU check); 18 trials"),
        measured="benchmarks/memory_baselines_cpu_tables.md, memory_baselines_cpu_{results,history}"
                 ".parquet, memory_baselines_cpu_curves.png (RESULTS.md, Issue 12)"),
    Target(
        id="table-2.1-cifar-fs", where="Table 2.1 (CIFAR-FS columns), Sec. 2.4.2",
        study="memory-baselines", select=dict(dataset="cifar_fs", image_size=32), compares=("model",),
        title="5-way online few-shot accuracy on CIFAR-FS: CL+LSTM vs APL, OPN, CPM",
        thesis=("CIFAR-FS, 5-way, mean over 3 runs, %, 1 / 5 / 8-shot: APL 37.6 / 45.8 / 46.9; "
                "OPN 49.9 / 54.9 / 56.8; CPM 50.2 / 55.8 / 57.8; CL+LSTM 47.6 / 56.7 / 61.0; LSTM "
                "and NTM fail to train. The prototype methods lead at 1 shot only."),
        smoke=Budget(dict(MEMORY_TINY), samples=2, seeds=2, settles=SMOKE_SETTLES),
        cpu=Budget({}, samples=3, seeds=3,
                   settles=("Not run here: CIFAR-100 is not on these machines. On Omniglot this "
                            "budget left the recurrent models on the plateau (table-2.1), so it "
                            "would not settle the CIFAR-FS ordering either.")),
        paper=Budget(dict(MEMORY_PAPER, image_size=32), samples=3, seeds=3,
                     settles=("Would test the 1-shot vs 5/8-shot crossing at the thesis' sizes and "
                              "100k iterations, 3 seeds."),
                     cost="~4.5 h per CL+LSTM trial on one H200 at 28x28 (RESULTS.md GPU check); "
                          "18 trials")),
    Target(
        id="fig-2.3", where="Fig. 2.3, Sec. 2.4.3", study="memory-continual", compares=("model",),
        title="Online continual learning: query accuracy vs task length, CL+LSTM vs OML, ANML",
        thesis=("No numbers. Accuracy falls with task length (5 to 20 subtasks) for every model; "
                "CL+LSTM is above OML and ANML at every length and degrades slowest."),
        smoke=Budget(dict(CONTINUAL_TINY), samples=2, seeds=2, settles=SMOKE_SETTLES),
        cpu=Budget({}, samples=3, seeds=3,
                   settles=("Not settled: tasks grow to 8 subtasks (evaluated at 5, 8, 10), not 20, "
                            "in 1500 updates at 14x14. A shorter seeded run (RESULTS.md, Issue 12 "
                            "(continued): 1000 updates, 2 seeds) did not show the thesis' ordering: "
                            "OML learns within hundreds of updates while CL+LSTM and ANML stay near "
                            "chance (0.10).")),
        paper=Budget(dict(CONTINUAL_PAPER), samples=3, seeds=3,
                     settles=("Would test it: tasks up to 20 subtasks, a curriculum step every 5000 "
                              "updates, 100k updates for every model (the thesis trains OML 150k "
                              "episodes; the study gives all models the same budget), 3 seeds.")),
        measured="benchmarks/memory_continual_cpu_{tables.md,results.parquet,history.parquet,curves.png} "
                 "(RESULTS.md, Issue 12 (continued): 1000 updates, 2 seeds)"),
    Target(
        id="fig-2.4", where="Fig. 2.4, Sec. 2.4.3", study="memory-continual", compares=("model",),
        title="Accuracy on each subtask of the longest continual task (the same sweep as fig-2.3)",
        thesis=("20-subtask task, paper budget: mean over subtasks 1-19 CL+LSTM 93.15, ANML 91.78 "
                "(ANML about 56 on the 20th). CL+LSTM is higher on the early subtasks (less "
                "forgetting), with low variance across subtasks."),
        smoke=Budget(dict(CONTINUAL_TINY), samples=2, seeds=2, settles=SMOKE_SETTLES),
        cpu=Budget({}, samples=3, seeds=3,
                   settles=("Not settled: the longest evaluated task has 10 subtasks, not 20, after "
                            "1500 updates, so the 93.15 / 91.78 means over 19 subtasks have no "
                            "counterpart. In a shorter seeded run (RESULTS.md, Issue 12 (continued)) "
                            "OML forgets as the thesis shows for the baselines; CL+LSTM and ANML are "
                            "flat near chance.")),
        paper=Budget(dict(CONTINUAL_PAPER), samples=3, seeds=3,
                     settles=("Would give the 20-subtask profile of each model at the thesis' sizes "
                              "and 100k updates, 3 seeds.")),
        measured="benchmarks/memory_continual_cpu_tables.md (RESULTS.md, Issue 12 (continued): "
                 "1000 updates, 2 seeds)"),
    Target(
        id="table-2.2", where="Table 2.2, Sec. 2.4.4, App. A.4", study="memory-segmentation-injection",
        compares=("injection_layer",),
        title="Online few-shot segmentation: CL U-Net with the label at layer 1 vs layer 9",
        thesis=("FSS-1000, 56x56, 100k + 100k iterations, %; segmentation IoU 1 / 6-shot, masking "
                "1 / 6-shot: CL U-Net, layer 9: 38.7 / 45.7, 73.8 / 77.8; CL U-Net, layer 1: "
                "49.2 / 56.0, 84.6 / 91.7. Injection at the first layer is better on all four."),
        smoke=Budget(dict(SEGMENTATION_TINY), samples=2, seeds=2, settles=SMOKE_SETTLES),
        cpu=Budget({}, samples=3, seeds=3,
                   settles=("Not settled, and not the thesis' data: Omniglot characters on textured "
                            "backgrounds stand in for FSS-1000 (not on these machines), 28x28, width "
                            "8, 1500 iterations. A shorter seeded run (RESULTS.md, Issue 12 (continued): 200 "
                            "iterations, 2 seeds) collapsed to background everywhere for both "
                            "layers: nothing compared.")),
        paper=Budget(dict(SEGMENTATION_PAPER), samples=3, seeds=3,
                     settles=("Would test it on FSS-1000 at 56x56 with 100k + 100k iterations, 3 "
                              "seeds; needs the FSS-1000 images in the data root (only a 5-image "
                              "format fixture is here).")),
        measured="benchmarks/memory_segmentation_cpu_{tables.md,results.parquet,history.parquet} "
                 "(RESULTS.md, Issue 12 (continued): 200 iterations, 2 seeds)"),
    Target(
        id="table-2.2-cnn", where="Table 2.2 (first row), Sec. 2.4.4", study="memory-segmentation-injection",
        select=dict(model="finetune_cnn"),
        title="Online few-shot segmentation: the MAML-pretrained CNN fine-tuned online",
        thesis=("FSS-1000, %; segmentation IoU 1 / 6-shot, masking 1 / 6-shot: Fine-tuned CNN "
                "65.3 / 64.0, 23.1 / 23.6. It segments but fails to mask distractors, far below the "
                "CL U-Nets' 73.8-91.7 (table-2.2)."),
        smoke=Budget(dict(SEGMENTATION_TINY), samples=2, seeds=2, settles=SMOKE_SETTLES),
        cpu=Budget({}, samples=3, seeds=3,
                   settles=("Not settled: the Omniglot stand-in for FSS-1000, 1500 iterations. A "
                            "shorter seeded run (RESULTS.md, Issue 12 (continued): 200 iterations, 2 seeds) "
                            "predicted background everywhere, like the CL U-Nets: nothing compared.")),
        paper=Budget(dict(SEGMENTATION_PAPER), samples=3, seeds=3,
                     settles="Would test it on FSS-1000 at the thesis' budget, 3 seeds."),
        measured="benchmarks/memory_segmentation_finetune_cpu_tables.md (RESULTS.md, Issue 12 (continued))"),
    Target(
        id="table-a.1", where="Table A.1, App. A.2", study="memory-depth",
        compares=("conv_layers", "subtasks", "skip"),
        title="Effective depth: CL+LSTM depth 4 / 6 x task length x skip connection",
        thesis=("Efficient task adaptation on k-way 5-shot tasks (T = task length): depth 4: "
                "6-way (T = 30, effective depth 120) yes, 7-way (T = 35, effective depth 140) no; "
                "depth 6: 4-way (T = 20, effective depth 120) yes, 5-way (T = 25, effective depth "
                "150) no. Effective depth = depth x task length decides; the skip connection lets "
                "long tasks train."),
        smoke=Budget(DEPTH_TINY, samples=1, seeds=1, settles=SMOKE_SETTLES),
        cpu=Budget({}, samples=3, seeds=3,
                   settles=("Not settled: 1500 updates at 14x14, width 16; the thesis' yes / no is "
                            "whether a model learns an efficient strategy at all, which needs the "
                            "long training to show. A shorter seeded run (RESULTS.md, Issue 12 "
                            "(continued): 300 updates) stayed at chance; it ran depth 4 only "
                            "(docs/reproduce.md, Known limits).")),
        paper=Budget(DEPTH_PAPER, samples=3, seeds=3,
                     settles=("Would test it at the thesis' sizes, 28x28 (App. A.2 does not state "
                              "its training length; 100k updates is Ch. 2's), 3 seeds.")),
        measured="benchmarks/memory_depth_cpu_tables.md (RESULTS.md, Issue 12 (continued))"),
    Target(
        id="sec-2.1-delay", where="Sec. 2.1 (claim; no table or figure)", study="memory-delay",
        compares=("model", "label_delay"),
        title="Labels arriving 1, 3, 6 steps late: CL+LSTM vs OPN, CPM",
        thesis=("No numbers. Sec. 2.1: with the label arriving after a long delay, the CL+LSTM "
                "'adapts seamlessly, whereas other adaptation strategies struggle'."),
        smoke=Budget(dict(MEMORY_TINY), samples=1, seeds=1, settles=SMOKE_SETTLES),
        cpu=Budget({}, samples=3, seeds=3,
                   settles=("Not settled: at this budget the CL+LSTM does not leave the plateau "
                            "even with delay 1 (table-2.1's cpu run). A shorter seeded run "
                            "(RESULTS.md, Issue 12 (continued): 600 updates, 2 seeds) found CL+LSTM "
                            "flat in d only because it had learnt nothing yet, while CPM and OPN "
                            "lose 1-shot accuracy as d grows: it does not test the claim.")),
        paper=Budget(dict(MEMORY_PAPER), samples=3, seeds=3,
                     settles=("Would test the claim at the thesis' sizes and 100k iterations (the "
                              "thesis names no delays; 1, 3, 6 are this study's), 3 seeds."),
                     cost="~4.5 h per CL+LSTM trial on one H200 (RESULTS.md GPU check); 27 trials"),
        measured="benchmarks/memory_delay_cpu_tables.md (RESULTS.md, Issue 12 (continued))"),
    # ------------------------------------------------------------------------------- Chapter 3
    _hyper_design(
        "table-3.1", "Table 3.1, Sec. 3.3-3.4.1", "Hypernetwork bias: with vs without",
        ("CIFAR-10 / CIFAR-100, mean of 3 runs, %: HyperWRN-40-2 (unshared) W Bias 91.89 / 68.15, "
         "W/O Bias 93.99 / 73.42; HyperWRN-28-4 W Bias 92.96 / 70.73, W/O Bias 94.72 / 76.03. "
         "Removing the bias improves accuracy."),
        "bias", dict(sharing="unshared", lambda_output_l2=6.25e-5, swa=False),
        ("One seed of a HyperWRN-10-1 for 4 epochs on 100 Omniglot classes: no interval. A larger "
         "benchmark (HyperWRN-10-2, 15 epochs, 5 seeds; RESULTS.md, Issue 3 benchmark 3a) found the "
         "thesis' direction, much stronger: 3.1% test accuracy with the bias vs 88.3% without "
         "(0 of 5 seeds higher).")),
    _hyper_design(
        "table-3.2", "Table 3.2, Sec. 3.3-3.4.1", "l2 penalty on the generated weights: 0 vs 6.25e-5",
        ("CIFAR-10 / CIFAR-100, %: HyperWRN-40-2 W/O Regularization 93.99 / 73.42, W "
         "Regularization 95.20 / 76.77; HyperWRN-28-4 W/O 94.72 / 76.03, W 95.90 / 79.20."),
        "lambda_output_l2", dict(sharing="unshared", bias=False, swa=False),
        ("One seed, 4 epochs: no interval. The larger benchmark (RESULTS.md, Issue 3 benchmark 3a: "
         "5 seeds, 15 epochs) found no difference: without the penalty +0.1 ± 1.0 points (paired), "
         "no conclusion either way.")),
    _hyper_design(
        "table-3.3", "Table 3.3, Sec. 3.3-3.4.1", "Hypernetwork sharing: unshared vs stage-shared vs global",
        ("CIFAR-10 / CIFAR-100, %: WRN-40-2 94.80 / 76.06; HyperWRN-40-2 shared 95.00 / 75.70, "
         "unshared 95.20 / 76.77; WRN-28-4 95.65 / 78.62; HyperWRN-28-4 shared 95.65 / 78.49, "
         "unshared 95.90 / 79.20; WRN-100-4 95.90 / 79.23. This study covers the shared vs "
         "unshared rows (and Ha et al.'s global one); the plain WRN rows are not in its grid."),
        "sharing", dict(bias=False, lambda_output_l2=6.25e-5, swa=False),
        ("One seed, 4 epochs: no interval. The larger benchmark (RESULTS.md, Issue 3 benchmark 3a: "
         "5 seeds) found stage-shared +0.5 ± 1.7 and global +0.7 ± 0.8 points vs unshared: no "
         "conclusion at that budget.")),
    _hyper_design(
        "table-3.5", "Table 3.5, Sec. 3.3-3.4.1", "SWA vs no SWA for the unshared HyperWRN",
        ("CIFAR-10 / CIFAR-100, %, 300 epochs of SWA training: WRN-28-4 + SWA 95.86 / 80.76; "
         "HyperWRN-28-4 (unshared) + SWA 96.35 / 81.59; without SWA (Table 3.3) the HyperWRN-28-4 "
         "has 95.90 / 79.20. This study covers SWA vs no SWA for the hypernetwork; the plain WRN "
         "+ SWA row is not in its grid."),
        "swa", dict(sharing="unshared", bias=False, lambda_output_l2=6.25e-5),
        ("One seed, 4 epochs: no interval. The larger benchmark (RESULTS.md, Issue 3 benchmark 3a: "
         "5 seeds) found SWA +0.2 ± 0.2 points, the thesis' direction at a much smaller size."),
        paper_extra=dict(epochs=300),
        paper_note=(", 300 epochs with SWA from epoch 160 (the thesis: '300 epochs of SWA "
                    "training'; when SWA starts is not stated)")),
    _maml(
        "table-3.6", "Table 3.6, Sec. 3.4.3", "MAML, same domain: HyperResNet-12 vs ResNet-12",
        ("MiniImageNet, 5-way, %, 1-shot / 5-shot: ResNet-12 57.65 / 74.33; HyperResNet-12 58.00 / "
         "73.00. The two are similar when training and test tasks are close."),
        (f"Not reproduced ({MAML_CPU_SETTING}): Hyper - plain +1.2 ± 8.9 points at 1 shot, -2.0 ± "
         "2.4 at 5 shots, 3 seeds (RESULTS.md, Issue 3 benchmark 3b)."),
        MAML_TABLE_3_6),
    _maml(
        "table-3.7", "Table 3.7, Sec. 3.4.3", "MAML, cross domain: HyperWRN vs WRN, FC100 -> MiniImageNet",
        ("Meta-train on FC100, meta-test on MiniImageNet, 5-way, %, 1-shot / 5-shot: WRN-16-4 "
         "40.75 / 53.20; HyperWRN-16-4 43.17 / 58.66; WRN-28-4 39.65 / 49.80; HyperWRN-28-4 43.56 / "
         "58.30. The HyperWRNs lead by 2.4-8.5 points."),
        (f"Not reproduced ({MAML_CPU_SETTING}): the plain ResNet-12 is ahead at 5 shots, -8.1 ± 3.4 "
         "points (plain higher in 3 of 3 seeds), the opposite sign of Table 3.7; level at 1 shot "
         "(-1.8 ± 6.9) (RESULTS.md, Issue 3 benchmark 3b)."),
        MAML_TABLE_3_7),
    _maml(
        "fig-3.5", "Fig. 3.5, Sec. 3.4.3",
        "Inner-loop movement of generated vs plain weights at three depths",
        ("No numbers. Hypernetwork-generated weights move significantly more in the inner loop "
         "than standard ResNet weights, at early, mid and late depths."),
        (f"Not reproduced ({MAML_CPU_SETTING}): counting only the weights the inner loop adapts, "
         "generated and plain weights move alike within noise at early and mid depth; at the late "
         "depth the generated ones move slightly more (Hyper higher in 5 of 6 pairs, intervals "
         "include 0) (RESULTS.md, Issue 3 benchmark 3b)."),
        MAML_TABLE_3_6),
    _maml(
        "fig-3.6", "Fig. 3.6, Sec. 3.4.3", "MAML validation curves, HyperWRN-28-4 vs WRN-28-4 (curves.png)",
        ("No numbers. In Table 3.7's setting the MAML-trained HyperWRN-28-4 converges better than "
         "the WRN-28-4 on validation tasks, at 1 and 5 shots."),
        (f"Not settled ({MAML_CPU_SETTING}): on Omniglot's validation classes Hyper and plain are "
         "level at iteration 60 (1-shot +2.0 ± 3.4, 5-shot -1.6 ± 7.6 points; RESULTS.md, Issue 3 "
         "benchmark 3b)."),
        MAML_TABLE_3_7),
    Target(
        id="table-3.8", where="Table 3.8, Sec. 3.5", study="hyper-rsc",
        compares=("hyper", "target_domain"),
        title="RSC fine-tuning on PACS, leave one domain out: HyperResNet-18 vs ResNet-18",
        thesis=("Photo / Cartoon / Sketch / Art painting / Mean, %: ResNet-18 (code) 93.13 / 76.92 / "
                "79.19 / 79.19 / 82.10; HyperResNet-18 94.63 / 79.05 / 81.10 / 81.00 / 83.94; R-18 "
                "(RSC paper) 95.99 / 80.31 / 80.85 / 83.43 / 85.15. HyperResNet-18 is above its "
                "ResNet-18 on every domain."),
        smoke=Budget(dict(arch="resnet18", widths=[4, 4, 8, 8], stem="cifar", epochs=1,
                          lr_milestones=[1], image_size=32, batch_size=8), samples=1, seeds=1,
                     settles=SMOKE_SETTLES + " (both models from scratch, not from checkpoints)"),
        cpu=Budget(dict(epochs=3, lr_milestones=[2], image_size=64, batch_size=32), samples=1, seeds=1,
                   settles=("Never run on PACS (not on these machines; docs/rsc.md). This smaller "
                            "run 'will not reproduce the table' (docs/rsc.md): it checks the "
                            "pipeline on real PACS with your checkpoints."),
                   needs=dict(pretrained_hyper="an absolute path to a `hyper` checkpoint with "
                                               "hyper=true, RGB (docs/rsc.md)",
                              pretrained_plain="an absolute path to a `hyper` checkpoint with "
                                               "hyper=false, RGB (docs/rsc.md)")),
        paper=Budget({}, samples=1, seeds=1,
                     settles=("Would test it: the RSC recipe (30 epochs, 222 px, batch 128; Huang et "
                              "al.) from ImageNet-pretrained HyperResNet-18 / ResNet-18 checkpoints; "
                              f"{ONE_SEED_PER_SWEEP}."),
                     needs=dict(pretrained_hyper="an absolute path to an ImageNet-pretrained "
                                                 "HyperResNet-18 `hyper` checkpoint (docs/rsc.md)",
                                pretrained_plain="an absolute path to an ImageNet-pretrained "
                                                 "ResNet-18 `hyper` checkpoint (docs/rsc.md)"))),
    # ------------------------------------------------------------------------------- Chapter 4
    Target(
        id="fig-4.9", where="Fig. 4.9, Sec. 4.4.6", study="fields-dynamic",
        compares=("dynamic", "pack_size"),
        title="HyperFields: dynamic vs static conditioning while packing 4 to 100 scenes",
        thesis=("No numbers. Without dynamic conditioning the hypernetwork collapses attributes "
                "(glacier / origami, plaid / stained glass) even when packing 4 scenes; Sec. 4.5: "
                "HyperFields packs over 100 scenes."),
        smoke=Budget(dict(FIELDS_TINY, pack_size=4), samples=1, seeds=1, settles=SMOKE_SETTLES,
                     needs=dict(teachers=TEACHERS)),
        cpu=Budget({}, samples=1, seeds=1,
                   settles=("Not run as a study here. A separate benchmark (RESULTS.md, Issue 9 item "
                            "1: 45 plain colour x shape scenes, 1500 steps, one seed) found no "
                            "dynamic vs static difference (-0.08 ± 0.15 dB on seen scenes); the "
                            "packing sweep over 4-100 attribute scenes has not run."),
                   cost="teachers of the attribute scenes: about 1.5 h of this machine (RESULTS.md, "
                        "Issue 9); 8 trials of 1000 steps (not measured)",
                   needs=dict(teachers=TEACHERS)),
        paper=Budget(dict(FIELDS_PAPER, split="pack"), samples=1, seeds=1,
                     settles=("App. B.1 sizes, 2000 steps per trial (the thesis gives no step count); "
                              f"tests dynamic vs static packing, not the figure itself: {FIELDS_SDS}."),
                     needs=dict(teachers=TEACHERS)),
        measured="benchmarks/fields_zero_shot.json (a benchmark script; RESULTS.md, Issue 9 item 1)"),
    Target(
        id="fig-4.10", where="Fig. 4.10, Sec. 4.4.6; Algorithm 3", study="fields-distillation",
        compares=("objective",),
        title="HyperFields: NeRF distillation vs training on the teachers' objective directly",
        thesis=("No numbers. Packing with score distillation ('No NeRF Distillation') causes mode "
                "collapse in geometry; NeRF distillation does not."),
        smoke=Budget(dict(FIELDS_TINY, scenes="a red sphere;a blue cube"), samples=1, seeds=1,
                     settles=SMOKE_SETTLES + " (two scenes packed, nothing held out)",
                     needs=dict(teachers="a store with the red sphere and blue cube teachers: "
                                         "`priorlab farm teachers --scenes red blue sphere cube`")),
        cpu=Budget({}, samples=1, seeds=1,
                   settles=("Not run as a study here (one 300-step distillation run: "
                            f"benchmarks/logs/fields_distillation_first.log). At any budget {FIELDS_SDS}, "
                            "so it cannot show the thesis' SDS mode collapse."),
                   cost="teachers: the 72-scene farm (45 seen are needed) took 73 min here, about "
                        "46 quiet (RESULTS.md, Issue 8 2b); 1500-step fits took ~21 min each on one "
                        "core (RESULTS.md, Issue 9 item 1)",
                   needs=dict(teachers=TEACHERS)),
        paper=Budget(dict(FIELDS_PAPER, split="zero-shot"), samples=1, seeds=1,
                     settles=(f"App. B.1 sizes, 2000 steps (the thesis gives none); {FIELDS_SDS}: "
                              "a distill vs reconstruction comparison, not the thesis' figure."),
                     needs=dict(teachers=TEACHERS))),
    Target(
        id="fig-4.11", where="Fig. 4.11, Sec. 4.4.8", study="fields-segmentation",
        compares=("dynamic", "context_views"),
        title="HyperSegmentationFields: part segmentation of novel scenes from a few views",
        thesis=("No numbers. From a handful of views of a novel ShapeNet scene, one forward pass "
                "gives NeRF weights whose feature field segments it, consistently across views."),
        smoke=Budget(dict(SEGFIELDS_TINY), samples=1, seeds=1, settles=SMOKE_SETTLES),
        cpu=Budget({}, samples=1, seeds=1,
                   settles=("Not settled. A separate benchmark at this budget (RESULTS.md, Issue 9 "
                            "item 4: 1000 steps, one seed, procedural part scenes) learned the "
                            "training scenes' parts (seen mIoU 0.48-0.58 vs 0.28 for the majority "
                            "part) but did not generalise to novel scenes (0.19 dynamic, 0.38 static "
                            "vs 0.29, 10 scenes)."),
                   cost="~10 min per 1000-step fit on one core (RESULTS.md, Issue 9 item 4); 4 trials"),
        paper=Budget(dict(source="shapenet", steps=10_000, eval_every=250), samples=1, seeds=1,
                     settles=("ShapeNet parts, 10k steps (the thesis gives no step count; "
                              "RESULTS.md's suggestion): would show whether novel scenes are "
                              "segmented; the thesis has only pictures to compare with."),
                     needs=dict(shapenet_root="the folder of ShapeNet's part benchmark "
                                              "(shapenetcore_partanno_segmentation_benchmark_v0_normal)")),
        measured="benchmarks/fields_segmentation.json (a benchmark script; RESULTS.md, Issue 9 item 4)"),
    # ------------------------------------------------------------------------------- Chapter 5
    Target(
        id="table-5.1", where="Table 5.1, Sec. 5.3.3-5.4", study="molecules-features",
        select=dict(noise_t=10, layer=2), compares=("feature_set",),
        title="Diffusion features for binding prediction: ChemBERTa +/- MiDi features (AUROC)",
        thesis=("AUROC on the thesis' own Claudin binding data (proprietary, a few hundred "
                "wet-lab labels): ChemBERTa 0.850; ChemBERTa + MiDi diffusion features 0.877 "
                "(+2.7 points)."),
        smoke=Budget(dict(FEATURES_TINY), samples=2, seeds=2,
                     settles=SMOKE_SETTLES + " (ECFP only unless you pass midi_checkpoint=)"),
        cpu=Budget({}, samples=1, seeds=1,
                   settles=("No budget here can regenerate the thesis' numbers: its data are "
                            "proprietary. On BACE, a run of this study (RESULTS.md, Issue 10 item 3: "
                            "5 scaffold splits, a MOSES model trained 17 min) found ecfp+midi - ecfp "
                            "= +0.013 ± 0.027: the thesis' sign, within noise."),
                   needs=dict(midi_checkpoint=MIDI)),
        paper=Budget(dict(n_splits=15, n_head_seeds=1, epochs=100), samples=1, seeds=1,
                     settles=("ChemBERTa and ChemBERTa + MiDi (Table 5.1's rows) on BACE over 15 "
                              "scaffold splits (not the thesis' protocol, which is unpublished; "
                              "about 12-15 splits resolve a +0.013 difference, RESULTS.md Issue 10)."),
                     needs=dict(midi_checkpoint=MIDI + "; the thesis' is MiDi itself (days on a GPU)",
                                chemberta_path="a local ChemBERTa folder (save_pretrained)")),
        measured="benchmarks/molecules_bace_tables.md, molecules_bace_results.parquet, "
                 "logs/molecules_bace_sweep.log (RESULTS.md, Issue 10 item 3)"),
]

TARGETS: dict[str, Target] = {t.id: t for t in _TARGETS}
"""Target id -> target, in the thesis' order."""

NOT_COVERED = (
    "Tables 3.3/3.4's plain-network rows and Table 3.4 (Hyper vs plain ResNets): no study sweeps "
    "Hyper vs plain on CIFAR/ImageNet (benchmarks/hyper_design.py compares them on Omniglot); "
    "Fig. 3.3/3.4 (benchmarks/hyper_bias_trace.py traces Fig. 3.3's ratio); Tables 4.1-4.3 and "
    "Fig. 4.4-4.8, B.2-B.4 (CLIP retrieval, user study, SDS generations: benchmarks/fields_*.py "
    "cover zero-shot, amortisation and fine-tuning without a study); the illustrations (Fig. 2.1, "
    "2.5, 3.1, 3.2, 4.1-4.3, 5.1, A.1-A.4). Studies with no thesis table: fields-teacher-recipe "
    "(teacher recipe at equal time) and molecules-pretrain (MiDi's schedule ablation).")


def get_target(target_id: str) -> Target:
    if target_id not in TARGETS:
        raise ReproduceError(f"unknown target {target_id!r}; the targets are: {', '.join(TARGETS)} "
                             "(`priorlab reproduce` lists them)")
    return TARGETS[target_id]


# -------------------------------------------------------------------------------- one run
@dataclass
class Plan:
    """What `priorlab reproduce TARGET --budget B` runs: a sweep of ``study`` with ``overrides``
    (on top of the study's laptop budget) and ``samples``."""

    target: Target
    budget_name: str
    study: str
    overrides: dict[str, Any]
    samples: int
    user_overrides: dict[str, Any]

    @property
    def budget(self) -> Budget:
        return self.target.budget(self.budget_name)

    def command(self) -> str:
        """The equivalent `priorlab sweep` command line."""
        words = [f"{k}={_cli_value(v)}" for k, v in self.overrides.items()]
        return " ".join(["priorlab sweep", self.study, *words, f"--samples {self.samples}",
                         "--stream local"])


def _cli_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_cli_value(v) for v in value) + "]"
    text = str(value)
    return f"'{text}'" if any(c in text for c in " ;") else text


def plan_run(target_id: str, budget: str, *, overrides: dict[str, Any] | None = None,
             samples: int | None = None) -> Plan:
    """The sweep a target runs at a budget: select + budget + the user's overrides (theirs win).
    A ReproduceError names a path the budget needs that was not given."""
    target = get_target(target_id)
    chosen = target.budget(budget)
    user = dict(overrides or {})
    missing = {k: how for k, how in chosen.needs.items() if not user.get(k) and not _has_default(target, k)}
    if missing:
        wanted = "; ".join(f"{k}=PATH ({how})" for k, how in missing.items())
        raise ReproduceError(f"{target.id} --budget {budget} needs {wanted}. Pass them after the "
                             f"target, e.g. `priorlab reproduce {target.id} "
                             f"{' '.join(f'{k}=...' for k in missing)} --budget {budget}`")
    if samples is not None and samples < 1:
        raise ReproduceError(f"--samples {samples}: give 1 or more")
    return Plan(target=target, budget_name=budget, study=target.study,
                overrides={**target.select, **chosen.overrides, **user},
                samples=chosen.samples if samples is None else samples, user_overrides=user)


def _has_default(target: Target, key: str) -> bool:
    """Whether a needed key has a usable default (fields' teachers=runs/teachers): the run reads
    it and the study names what is missing there; an empty default ("") must be given."""
    from priorlab.platform.studies import get_study

    return bool(getattr(get_study(target.study).config_cls(), key, ""))


def grid_points(space: dict[str, Any]) -> list[dict[str, Any]]:
    """Every combination of a space's ``tune.choice`` / ``tune.grid_search`` values ([{}] for an
    empty space); keys searched over a continuous range are left to the config's default."""
    from ray.tune.search.sample import Categorical

    axes = {}
    for key, value in space.items():
        if isinstance(value, Categorical):
            axes[key] = list(value.categories)
        elif isinstance(value, dict) and "grid_search" in value:
            axes[key] = list(value["grid_search"])
    return [dict(zip(axes, combo)) for combo in itertools.product(*axes.values())]


def check_plan(plan: Plan) -> dict[str, Any]:
    """Validate a plan before anything starts, as every trial will see it: the study's config
    class accepts budget + overrides at every point of the grid (``config_from_dict`` names an
    unknown key or a bad value), and ``samples`` > 1 gives distinct seeds. Returns
    ``{"trials": n, "seeds": n}``."""
    from priorlab.methods.configuration import ConfigError, config_from_dict
    from priorlab.platform.studies import get_study
    from priorlab.platform.sweep import choices_only, fixed_seed_repeats

    study = get_study(plan.study)
    fixed = {**study.budget, **plan.overrides}
    try:
        space = {k: v for k, v in study.space(fixed).items() if k not in fixed}
        points = grid_points(space)
        for point in points:
            config_from_dict(study.config_cls, {**fixed, **point})
    except ConfigError as err:
        raise ReproduceError(f"{plan.target.id} --budget {plan.budget_name} ({plan.study}): {err}") from None
    choices = choices_only(space)
    repeats = fixed_seed_repeats(study, fixed, plan.samples) if choices is not None else None
    if repeats is None and plan.samples > 1:
        raise ReproduceError(
            f"--samples {plan.samples}: {plan.study} runs its grid once per sweep with one seed, so "
            f"repeats would be the same trials; keep 1 sample and run again with seed=1, seed=2 ...")
    grid_seeds = {p["seed"] for p in points if "seed" in p}
    seeds = len(repeats) if repeats is not None else max(1, len(grid_seeds))
    return {"trials": len(points) * (plan.samples if repeats is not None else 1), "seeds": seeds}


@dataclass
class ReproduceOutcome:
    plan: Plan
    sweep: Any
    """The ``platform.sweep.SweepOutcome``."""
    text: str
    """The study's report, then the thesis' numbers and what the budget settles."""


def run_target(target_id: str, budget: str, *, data_root: Path, runs_dir: Path,
               overrides: dict[str, Any] | None = None, samples: int | None = None,
               name: str | None = None, address: str | None = None, use_gpu: bool = False,
               verbose: bool = False) -> ReproduceOutcome:
    """Run one target at one budget (a sweep with ``--stream local``) and compose its report."""
    from priorlab.platform.sweep import run_sweep

    plan = plan_run(target_id, budget, overrides=overrides, samples=samples)
    check_plan(plan)
    print(f"[priorlab] reproduce {plan.target.id} --budget {budget}: {plan.command()}", flush=True)
    outcome = run_sweep(plan.study, overrides=plan.overrides, data_root=Path(data_root),
                        runs_dir=Path(runs_dir),
                        name=name or f"{plan.target.id}-{budget}-{time.strftime('%Y%m%d-%H%M%S')}",
                        samples=plan.samples, address=address, use_gpu=use_gpu, verbose=verbose,
                        stream="local")
    return ReproduceOutcome(plan=plan, sweep=outcome, text=compose(plan, outcome.report_text))


def compose(plan: Plan, report_text: str) -> str:
    """The study's report (ours), then the thesis' numbers and what this budget settles."""
    t, b = plan.target, plan.budget
    parts = [report_text, "",
             f"== The thesis ({t.where}) ==", t.thesis, "",
             f"== What the {plan.budget_name} budget settles ==", b.settles]
    if plan.user_overrides:
        parts.append("(run with your overrides on top of the budget: "
                     + " ".join(f"{k}={_cli_value(v)}" for k, v in plan.user_overrides.items())
                     + "; the note above is about the budget as declared)")
    if t.measured:
        parts += ["", f"Last measured here: {t.measured}"]
    return "\n".join(parts)

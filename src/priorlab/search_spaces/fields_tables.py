"""The thesis-shaped tables of the HyperFields studies for `priorlab report` (thesis Ch. 4).

- `fields-distillation` (Fig. 4.10): per objective, seen / unseen PSNR against the exact views,
  the seen - unseen gap and, with distillation, PSNR against the teachers; and the paired
  difference distill - direct (trials matched on every other key, the seed included).
- `fields-dynamic` (Fig. 4.9): packed scenes' PSNR, dynamic / static x scenes packed, and the
  paired difference dynamic - static per pack size.
- `fields-segmentation` (Sec. 4.4.8): novel scenes' part mIoU, dynamic / static x context views,
  beside the majority-part reference and the novel scenes' PSNR.

Cells are mean ± 95% t-interval over the trials in the cell (seeds; ``platform.stats``).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from priorlab.platform.report import ReportTable
from priorlab.platform.stats import interval_table, mean_ci95, paired_effect

SEEDS_CI = "mean ± 95% t-interval over seeds (n - 1 dof; n = seeds)"
PAIRED = "paired over trials that differ in this choice only (same seed and other keys)"


def _columns_table(df: pd.DataFrame, row_key: str, metrics: dict[str, str], spec: str) -> pd.DataFrame:
    levels = sorted(df[row_key].dropna().unique(), key=lambda v: (str(type(v)), v))
    return pd.DataFrame(
        {label: [mean_ci95(df[df[row_key] == level][m]).text(spec) if m in df else "-" for level in levels]
         for m, label in metrics.items()},
        index=pd.Index([str(v) for v in levels], name=row_key.split("/")[-1]))


def _paired_rows(df: pd.DataFrame, factor: str, a: Any, b: Any, metric: str, by: str | None) -> pd.DataFrame:
    names = (str(a), str(b))
    groups = [(str(v), df[df[by] == v]) for v in sorted(df[by].dropna().unique())] if by else []
    groups.append(("all", df))
    return pd.DataFrame({f"{b} - {a}": [paired_effect(part, factor, a, b, metric).text(names=names)
                                         for _, part in groups]},
                        index=pd.Index([g for g, _ in groups], name=(by or "").split("/")[-1] or "trials"))


def distillation_tables(df: pd.DataFrame, fixed: dict[str, Any]) -> list[ReportTable]:
    if "config/objective" not in df or "seen/psnr" not in df:
        return []
    out = [ReportTable(
        title=f"NeRF distillation vs the teachers' objective (cf. Fig. 4.10): PSNR (dB) against the "
              f"exact views, {SEEDS_CI}",
        frame=_columns_table(df, "config/objective", {
            "seen/psnr": "seen", "unseen/psnr": "unseen (zero-shot)", "gap/psnr": "seen - unseen",
            "seen/psnr_vs_teacher": "seen vs teacher", "seen/ssim": "seen SSIM"}, ".2f"))]
    if set(df["config/objective"]) >= {"distill", "direct"}:
        out.append(ReportTable(title=f"distill - direct, seen PSNR (dB), {PAIRED}",
                               frame=_paired_rows(df, "config/objective", "direct", "distill",
                                                  "seen/psnr", None)))
    return out


def _dynamic_grid(df: pd.DataFrame, factor: str, metric: str, title: str, paired_title: str,
                  col_name, spec: str) -> tuple[ReportTable, ReportTable | None]:
    """``metric`` over dynamic / static x ``factor`` (mean ± t-interval over seeds), and the
    paired dynamic - static difference per level of ``factor`` when both choices ran."""
    grid = ReportTable(title=f"{title}, {SEEDS_CI}",
                       frame=interval_table(df, "config/dynamic", factor, metric, col_name=col_name,
                                            spec=spec))
    paired = None
    if df["config/dynamic"].nunique() == 2:
        paired = ReportTable(title=f"{paired_title}, {PAIRED}",
                             frame=_paired_rows(df, "config/dynamic", False, True, metric, factor))
    return grid, paired


def dynamic_tables(df: pd.DataFrame, fixed: dict[str, Any]) -> list[ReportTable]:
    if not {"config/dynamic", "config/pack_size", "seen/psnr"} <= set(df.columns):
        return []
    grid, paired = _dynamic_grid(
        df, "config/pack_size", "seen/psnr",
        "Dynamic vs static conditioning while packing scenes (cf. Fig. 4.9): packed scenes' "
        "PSNR (dB) against the exact views", "dynamic - static, packed scenes' PSNR (dB)",
        lambda n: f"{int(n)} scenes", ".2f")
    return [t for t in (grid, paired) if t is not None]


def segmentation_tables(df: pd.DataFrame, fixed: dict[str, Any]) -> list[ReportTable]:
    if not {"config/dynamic", "config/context_views", "novel/miou"} <= set(df.columns):
        return []
    grid, paired = _dynamic_grid(
        df, "config/context_views", "novel/miou",
        "HyperSegmentationFields on novel scenes (cf. Sec. 4.4.8): part mIoU from novel views, "
        "dynamic / static x context views", "dynamic - static, novel mIoU",
        lambda n: f"{int(n)} views", ".3f")
    beside = ReportTable(
        title="Beside it: foreground IoU, PSNR (dB) and the majority-part reference (the true mask "
              "painted with the scene's most frequent part) on novel scenes, mean ± 95% t-interval "
              "over the trials at each level (seeds x context views)",
        frame=_columns_table(df, "config/dynamic", {
            "novel/miou": "mIoU", "novel/miou_majority": "majority-part mIoU",
            "novel/fg_iou": "foreground IoU", "novel/psnr": "PSNR", "seen/miou": "seen mIoU"}, ".3f"))
    return [t for t in (grid, beside, paired) if t is not None]

"""Study `memory-segmentation-injection` (Table 2.2): injection layer 1 vs 9 as a grid, the CNN
baseline as one configuration, and the report in Table 2.2's layout with the thesis' rows."""

import pandas as pd

from priorlab.methods.memory.segmentation import build_segmentation_model
from priorlab.platform.studies import get_study
from priorlab.platform.sweep import choices_only
from priorlab.search_spaces.memory_segmentation_injection import config_of


def test_the_grid_is_the_injection_layer_and_the_baseline_is_one_configuration():
    study = get_study("memory-segmentation-injection")
    assert choices_only(study.space()) == {"injection_layer": [1, 9]}
    assert choices_only(study.space({"model": "finetune_cnn"})) == {"injection_layer": [1]}
    for layer in (1, 9):
        build_segmentation_model(config_of({**study.budget, "injection_layer": layer}))
    build_segmentation_model(config_of({**study.budget, "model": "finetune_cnn"}))


def test_the_report_is_laid_out_as_table_2_2():
    study = get_study("memory-segmentation-injection")
    rows = [{"config/model": m, "config/injection_layer": l, "eval/iou_1shot": v, "eval/iou_6shot": v,
             "eval/mask_1shot": 1 - v, "eval/mask_6shot": 1 - v}
            for m, l, v in (("cl_unet", 1, 0.5), ("cl_unet", 1, 0.6), ("cl_unet", 9, 0.4),
                            ("cl_unet", 9, 0.42), ("finetune_cnn", 1, 0.7), ("finetune_cnn", 1, 0.7))]
    [table] = study.tables(pd.DataFrame(rows), dict(study.budget))
    frame = table.frame
    assert set(frame.index) == {"CL U-Net, layer 1", "CL U-Net, layer 9", "Fine-tuned CNN"}
    assert list(frame.columns)[:4] == ["segmentation 1-shot", "segmentation 6-shot", "masking 1-shot",
                                       "masking 6-shot"]
    assert frame.loc["CL U-Net, layer 1", "segmentation 1-shot"].startswith("0.550 ±")
    assert frame.loc["CL U-Net, layer 1", "thesis seg. 1/6, mask 1/6 (FSS-1000)"] == "49.2 / 56.0 / 84.6 / 91.7"
    assert "Table 2.2" in table.title and "omniglot" in table.title

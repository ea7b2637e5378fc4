"""The study registry: every `priorlab sweep NAME` is listed here, explicitly.

Later issues add their studies (hyper-design, hyper-maml, ...) as entries of :data:`STUDIES`.
Importing a study pulls in Ray Tune, so entries are loaded lazily by name.
"""

from __future__ import annotations

import importlib

from priorlab.search_spaces.base import Study

STUDIES: dict[str, str] = {
    "memory-label-injection": "priorlab.search_spaces.memory_label_injection",
    "memory-baselines": "priorlab.search_spaces.memory_baselines",
    "memory-delay": "priorlab.search_spaces.memory_delay",
    "memory-continual": "priorlab.search_spaces.memory_continual",
    "memory-depth": "priorlab.search_spaces.memory_depth",
    "memory-segmentation-injection": "priorlab.search_spaces.memory_segmentation_injection",
    "hyper-design": "priorlab.search_spaces.hyper_design",
    "hyper-maml": "priorlab.search_spaces.hyper_maml",
    "hyper-rsc": "priorlab.search_spaces.hyper_rsc",
    "fields-teacher-recipe": "priorlab.search_spaces.fields_teacher_recipe",
    "fields-dynamic": "priorlab.search_spaces.fields_dynamic",
    "fields-distillation": "priorlab.search_spaces.fields_distillation",
    "fields-segmentation": "priorlab.search_spaces.fields_segmentation",
    "molecules-pretrain": "priorlab.search_spaces.molecules_pretrain",
    "molecules-features": "priorlab.search_spaces.molecules_features",
}


class UnknownStudyError(KeyError):
    def __str__(self) -> str:
        return self.args[0]


def get_study(name: str) -> Study:
    if name not in STUDIES:
        raise UnknownStudyError(
            f"unknown study {name!r}; available studies: {', '.join(sorted(STUDIES))}"
        )
    return importlib.import_module(STUDIES[name]).STUDY

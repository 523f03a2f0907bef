"""The paths module mirrors dvc.yaml: each stage's outputs are exactly its outs and metrics."""

from __future__ import annotations

import yaml

from pipeline.plumbing.paths import ROOT, STAGE_OUTPUTS, TRAIN, EvaluateOutputs, TrainOutputs


def declared_outputs(stage: dict) -> list[str]:
    paths = []
    for key in ("outs", "metrics"):
        for entry in stage.get(key, []):
            paths.append(entry if isinstance(entry, str) else next(iter(entry)))
    return paths


def test_every_stage_output_in_dvc_yaml_is_a_path_here_and_no_other():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    with_outputs = {name for name, stage in stages.items() if declared_outputs(stage)}
    assert with_outputs == set(STAGE_OUTPUTS)
    for name, paths in STAGE_OUTPUTS.items():
        here = [str(path.relative_to(ROOT)) for path in paths]
        assert here == declared_outputs(stages[name]), name


def test_outputs_under_another_root_keep_their_relative_places(tmp_path):
    moved = TrainOutputs.under(tmp_path)
    assert moved.model == tmp_path / TRAIN.model.relative_to(ROOT)
    figures = EvaluateOutputs.under(tmp_path).figure_files()
    assert [f.relative_to(tmp_path).as_posix() for f in figures] == [
        "reports/figures/confusion_matrix.png",
        "reports/figures/training_curves.png",
        "reports/figures/misclassified.png",
    ]

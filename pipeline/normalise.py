"""Stage `normalise`: the raw IDX files as float32 pixels in [0, 1] and uint8 labels.

Writes `data/normalised/{train,test}.npz` and `reports/data_stats.json`
(pipeline/data/normalisation.py).

    python -m pipeline.normalise
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from pipeline.data.normalisation import normalise_mnist
from pipeline.plumbing.compute import pin
from pipeline.plumbing.config import params_readable, stage_config
from pipeline.plumbing.errors import stage_errors
from pipeline.plumbing.paths import DATA_STATS, NORMALISED_TEST, NORMALISED_TRAIN, RAW_DIR
from pipeline.plumbing.process import skip_last_collection
from pipeline.plumbing.publish import replaced_together


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    with stage_errors("normalise"):
        config = stage_config(cfg)
        pin(config.compute, "normalise")  # may restart this process: before any work
        outputs = (NORMALISED_TRAIN, NORMALISED_TEST, DATA_STATS)
        with replaced_together(outputs) as staged:
            stats = normalise_mnist(RAW_DIR, config.data.files, *staged)
        print(
            f"normalise: {stats['train']['count']} train and {stats['test']['count']} test "
            f"images into {NORMALISED_TRAIN.parent}"
        )


if __name__ == "__main__":
    skip_last_collection()
    params_readable("normalise")
    main()

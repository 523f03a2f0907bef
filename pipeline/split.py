"""Stage `split`: hold out a stratified, seeded dev set from the training examples.

Writes `data/split/{train,dev}.npz` (pipeline/data/dev_split.py); the test set is not read.

    python -m pipeline.split split.dev_size=1000 split.seed=1
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from pipeline.data.dev_split import split_dataset
from pipeline.plumbing.config import params_readable, stage_config
from pipeline.plumbing.errors import stage_errors
from pipeline.plumbing.paths import NORMALISED_TRAIN, SPLIT_DEV, SPLIT_TRAIN
from pipeline.plumbing.process import skip_last_collection
from pipeline.plumbing.publish import replaced_together


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    with stage_errors("split"):
        config = stage_config(cfg)
        with replaced_together((SPLIT_TRAIN, SPLIT_DEV)) as (train, dev):
            sizes = split_dataset(
                NORMALISED_TRAIN, train, dev, config.split.dev_size, config.split.seed
            )
        print(
            f"split: {sizes['train']} train and {sizes['dev']} dev examples into "
            f"{SPLIT_TRAIN.parent}"
        )


if __name__ == "__main__":
    skip_last_collection()
    params_readable("split")
    main()

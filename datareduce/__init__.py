"""datareduce: train CNNs on less data — ADONIS (online importance sampling) and IDS (offline subset selection).

Demidovskij et al., "Effective Pre-Training Dataset Selection..." / data reduction for CNN training,
Mathematics 2023, 11, 3120. The README's "Our reading of the paper" says where the paper reads two ways.
"""
from .accumulator import BatchAccumulator, TensorBatchOps
from .adonis import AdonisSelector
from .composer_sb import ComposerSBSelector
from .config import (AdonisConfig, ComposerSBConfig, EmbedConfig, IDSConfig, InfoBatchConfig, OfflineConfig,
                     RandomKeepConfig, ReduceConfig, RS2Config, SBConfig)
from .infobatch import InfoBatchPruner
from .online import OnlineSelection
from .random_keep import RandomKeepSelector
from .rs2 import RS2Subsets
from .selective_backprop import SelectiveBackpropSelector

__all__ = [
    "AdonisSelector", "SelectiveBackpropSelector", "ComposerSBSelector", "InfoBatchPruner", "RandomKeepSelector",
    "RS2Subsets",
    "BatchAccumulator", "TensorBatchOps", "OnlineSelection",
    "AdonisConfig", "IDSConfig", "EmbedConfig", "OfflineConfig", "SBConfig", "ComposerSBConfig", "InfoBatchConfig",
    "RandomKeepConfig", "RS2Config", "ReduceConfig",
]
__version__ = "0.1.0"

"""Hyena-GLT models: the Hyena operator, patching, the backbone, task heads and model directories."""

from .heads import POOLS, TASKS, HyenaGLTForTask, rc_average_logits
from .hyena import HyenaOperator, ImplicitFilter, fast_fft_size, fft_conv
from .hyena_glt import HyenaGLTModel, HyenaGLTOutput, count_parameters
from .patching import NoPatcher, Patcher, StaticPatcher, build_patcher, pool_mean, unpool
from .positions import Segments
from .pretrained import from_pretrained, save_pretrained

__all__ = [
    "POOLS", "TASKS", "HyenaGLTForTask", "rc_average_logits", "HyenaOperator", "ImplicitFilter", "fast_fft_size",
    "fft_conv", "HyenaGLTModel", "HyenaGLTOutput", "count_parameters", "NoPatcher", "Patcher", "StaticPatcher",
    "build_patcher", "pool_mean", "unpool", "Segments", "from_pretrained", "save_pretrained",
]

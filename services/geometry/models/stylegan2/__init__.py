"""StyleGAN2 from rosinality/stylegan2-pytorch checkpoints, in plain torch, in Z, W or W+:
its architecture read from the state dict (architecture.py), the network (network.py), loading
and spaces (loading.py), controls (controls.py)."""

from .architecture import StyleGAN2Architecture, check_state_dict
from .controls import init_state_dict, stylegan2_control
from .loading import SPACES, check_space, load_stylegan2, make_generator, read_checkpoint
from .network import StyleGAN2

__all__ = [
    "SPACES",
    "StyleGAN2",
    "StyleGAN2Architecture",
    "check_space",
    "check_state_dict",
    "init_state_dict",
    "load_stylegan2",
    "make_generator",
    "read_checkpoint",
    "stylegan2_control",
]

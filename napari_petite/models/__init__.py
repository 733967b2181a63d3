"""Denoising backbones (UNETR, 3D CVT-GAN), their registry and checkpoints."""

from napari_petite.models.base import Backbone, PartSites, PromptSite, Site
from napari_petite.models.checkpoint import file_sha256, load_checkpoint, read_card, save_checkpoint
from napari_petite.models.registry import (
    backbone_class,
    backbone_names,
    build_model,
    preset_names,
)

__all__ = [
    "Backbone",
    "PartSites",
    "PromptSite",
    "Site",
    "backbone_class",
    "backbone_names",
    "build_model",
    "file_sha256",
    "load_checkpoint",
    "preset_names",
    "read_card",
    "save_checkpoint",
]

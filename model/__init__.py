"""What a ViT is: the architecture, attention rollout, and loading the checkpoints people have."""

from model.config import ViTConfig, config_from_name, parse_variant
from model.load import LoadedModel, load_model
from model.rollout import attention_rollout, cls_attention_rollout
from model.vit import VisionTransformer

__all__ = [
    "LoadedModel",
    "ViTConfig",
    "VisionTransformer",
    "attention_rollout",
    "cls_attention_rollout",
    "config_from_name",
    "load_model",
    "parse_variant",
]

"""The Vision Transformer of Dosovitskiy et al.: patches -> embedding -> [CLS] + positions ->
pre-norm Transformer encoder -> head."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from model.config import ViTConfig
from model.layers import Block, PatchEmbed


class VisionTransformer(nn.Module):
    """A ViT built from one `ViTConfig`; parameter names follow timm's."""

    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.patch_embed = PatchEmbed(c.patch_size, c.in_chans, c.embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, c.embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + c.num_patches, c.embed_dim))
        self.pos_drop = nn.Dropout(c.drop_rate)
        drop_path = torch.linspace(0, c.drop_path_rate, c.depth).tolist()
        self.blocks = nn.ModuleList(
            Block(
                c.embed_dim,
                c.num_heads,
                c.mlp_dim,
                c.qkv_bias,
                c.layer_norm_eps,
                drop=c.drop_rate,
                attn_drop=c.attn_drop_rate,
                drop_path=drop_path[i],
            )
            for i in range(c.depth)
        )
        self.norm = nn.LayerNorm(c.embed_dim, eps=c.layer_norm_eps)
        self.pre_logits: nn.Module = nn.Identity()
        head_in = c.embed_dim
        if c.representation_size:
            self.pre_logits = nn.Sequential(
                nn.Linear(c.embed_dim, c.representation_size), nn.Tanh()
            )
            head_in = c.representation_size
        self.head_drop = nn.Dropout(c.drop_rate)
        self.head: nn.Module = nn.Linear(head_in, c.num_classes) if c.num_classes else nn.Identity()
        self.grad_checkpointing = False  # a training setting, not part of the config
        self.init_weights()

    def init_weights(self) -> None:
        """Truncated-normal weights, zero biases, and a zero head as in the paper."""
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        self.reset_head()

    def reset_head(self, num_classes: int | None = None) -> None:
        """A fresh zero-initialised head, e.g. for fine-tuning on another label set."""
        if num_classes is not None and num_classes != self.config.num_classes:
            self.config = self.config.replace(num_classes=num_classes)
            head_in = self.config.representation_size or self.config.embed_dim
            self.head = nn.Linear(head_in, num_classes) if num_classes else nn.Identity()
        if isinstance(self.head, nn.Linear):
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each block's activations in backward instead of storing them: memory for
        one block's activations instead of all, for about a third more compute."""
        self.grad_checkpointing = enable

    def forward_features(
        self, x: Tensor, return_attention: bool = False
    ) -> tuple[Tensor, list[Tensor]]:
        """Encoded tokens (B, 1+N, D) after the final norm, and each layer's attention
        probabilities (B, heads, 1+N, 1+N) when asked for (explicit attention path)."""
        x = self.patch_embed(x)
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        x = self.pos_drop(torch.cat((cls, x), dim=1) + self.pos_embed)
        attentions: list[Tensor] = []
        recompute = self.grad_checkpointing and self.training and torch.is_grad_enabled()
        for block in self.blocks:
            if recompute and not return_attention:
                # Keep only the block's input; backward runs the block again.
                x, probs = checkpoint(block, x, use_reentrant=False)
            else:
                x, probs = block(x, return_attention)
            if probs is not None:
                attentions.append(probs)
        return self.norm(x), attentions

    def pooled(self, features: Tensor) -> Tensor:
        """(B, D) of encoded tokens: what the head reads, the class token or the patch mean."""
        if self.config.global_pool == "avg":
            return features[:, 1:].mean(dim=1)
        return features[:, 0]

    def forward_head(self, x: Tensor) -> Tensor:
        """Pool the tokens (class token or patch mean) and classify."""
        return self.head(self.head_drop(self.pre_logits(self.pooled(x))))

    def forward(self, x: Tensor) -> Tensor:
        """Logits (B, num_classes), by the fused attention path."""
        features, _ = self.forward_features(x)
        return self.forward_head(features)

    def forward_with_attention(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        """Logits and each layer's attention probabilities, by the explicit path."""
        features, attentions = self.forward_features(x, return_attention=True)
        return self.forward_head(features), attentions

"""Models: an encoder with named layers, a task head and an L2-normalised projection head.

Every model returns a :class:`ModelOutput` and lists its encoder layers bottom to top, which is what the
trainer's freezing and layer-wise learning-rate decay act on. Domain encoders (graphs, text) plug in
behind their extras.
"""

from contrastlab.models.base import (
    ContrastiveModel,
    EncoderOutput,
    ModelOutput,
    build_model,
    register_model,
    wrap_encoder,
)
from contrastlab.models.mlp import MLPEncoder

__all__ = [
    "ContrastiveModel",
    "EncoderOutput",
    "MLPEncoder",
    "ModelOutput",
    "build_model",
    "register_model",
    "wrap_encoder",
]

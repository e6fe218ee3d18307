"""contrastlab: contrastive representation learning for PyTorch.

The core (``contrastlab.losses``, ``contrastlab.distributed``) depends on torch only; domains, training,
diagnostics and reports live behind extras and are imported on demand.
"""

from contrastlab import losses

__all__ = ["__version__", "losses"]
__version__ = "0.1.0"

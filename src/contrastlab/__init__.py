"""contrastlab: contrastive representation learning for PyTorch.

The core (``contrastlab.losses``, ``contrastlab.distributed``) depends on torch only; domains, training,
diagnostics and reports live behind extras and are imported on demand. Nothing is imported with the
package itself: ``contrastlab.losses`` and the training API load on first use.
"""

from contrastlab._lazy import lazy_attributes

__all__ = [
    "Callback",
    "Control",
    "__version__",
    "fit",
    "judge",
    "losses",
    "register_dataset",
    "register_metric",
    "register_model",
    "register_term",
    "resume",
    "sweep",
    "verdict",
]
__version__ = "0.1.0"

# The training API needs the `train` extra: it is imported on first use, so `import contrastlab` (and the
# losses) work with torch alone.
_LAZY = {
    "losses": "contrastlab.losses",  # torch: imported when first used, so `contrastlab --help` starts fast
    "fit": "contrastlab.train.api:fit",
    "Callback": "contrastlab.train.callbacks:Callback",
    "Control": "contrastlab.train.callbacks:Control",
    "resume": "contrastlab.train.api:resume",
    "verdict": "contrastlab.experiments.verdict:run_verdict",
    "judge": "contrastlab.experiments.judge:judge",
    "sweep": "contrastlab.experiments.sweep:run_sweep",
    "register_model": "contrastlab.models.base:register_model",
    "register_dataset": "contrastlab.data.catalog:register_dataset",
    "register_metric": "contrastlab.metrics:register_metric",
    "register_term": "contrastlab.train.terms:register_term",
}


__getattr__ = lazy_attributes("contrastlab", _LAZY)

"""Training engine on ``pytorch_lightning``: ``fit(TrainConfig) -> (method, history)``.

``TrainConfig.preset("smoke" | "cpu" | "colab" | "paper", method=..., **overrides)``; ``fit`` writes ``last.ckpt``
(atomic, every epoch) and ``logs/version_<n>/metrics.csv`` to the run directory, resumes with ``resume=True``, warns on
representation collapse and stops on a NaN loss; ``load_method(path)`` rebuilds a trained method; ``fit_dual_stage``
runs CVSA's two-stage recipe; ``INITS`` / ``PAPER_INIT``: how a run starts, and how each paper starts it. Views are made
in batches on the training device from the uint8 training store (:mod:`fgssl_lib.train.store`) or one sample at a time
in the loader's workers (``TrainConfig.view_pipeline``). DDP: set ``devices``, ``num_nodes``, ``strategy`` and
``sync_batchnorm``; ``batch_size`` is per device, ``lr`` is not scaled, BatchNorm normalises each device's batch (the
book's "Reproduce on a GPU" page).
"""

from fgssl_lib.train.callbacks import CollapseMonitor, History, NonFiniteLossError, embedding_std
from fgssl_lib.train.config import INITS, PAPER_INIT, TrainConfig
from fgssl_lib.train.fit import build_method, check_checkpoint, fit, fit_dual_stage, load_method

__all__ = ["INITS", "PAPER_INIT", "CollapseMonitor", "History", "NonFiniteLossError", "TrainConfig", "build_method", "check_checkpoint",
           "embedding_std", "fit", "fit_dual_stage", "load_method"]

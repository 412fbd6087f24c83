"""daskgmm: Gaussian Mixture Models fitted by EM on a Dask cluster.

scikit-learn's ``GaussianMixture`` API and answers, on data that does not fit
one process.
"""

from .io import load
from .mixture import ConvergenceWarning, GaussianMixture, NotFittedError
from .select import SelectionResult, select_n_components

__version__ = "0.1.0"

__all__ = [
    "GaussianMixture",
    "select_n_components",
    "SelectionResult",
    "load",
    "ConvergenceWarning",
    "NotFittedError",
    "__version__",
]

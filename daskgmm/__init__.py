"""daskgmm: Gaussian Mixture Models fitted by EM on a Dask cluster.

scikit-learn's ``GaussianMixture`` and ``BayesianGaussianMixture`` API and answers, on data that does not fit
one process.
"""

from ._version import __version__
from .bayesian_mixture import BayesianGaussianMixture
from .io import load
from .mixture import ConvergenceWarning, GaussianMixture, NotFittedError
from .select import SelectionResult, select_n_components

__all__ = [
    "GaussianMixture",
    "BayesianGaussianMixture",
    "select_n_components",
    "SelectionResult",
    "load",
    "ConvergenceWarning",
    "NotFittedError",
    "__version__",
]

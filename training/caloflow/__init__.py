"""caloflow: CaloFlow (flow-I, MAF teacher, distilled IAF student) for CaloChallenge Dataset 1.

The offline half of caloflow-serve: data (CaloChallenge HDF5, binning XML, the stand-in generator),
the flows, training, export and evaluation. The server lives in ``caloflow_server`` and imports nothing
from here.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]

"""Export a trained sampler as one graph, ``(INCIDENT_ENERGY, NOISE) -> SHOWERS``, in several formats.

``export_sampler`` writes ONNX (the plain graph and the fast one), TorchScript and torch.export artifacts
(compact by default: unmasked MADE weights in float16, rebuilt inside the graph); ``reference_sampler`` is
the eager model they must match; ``check_parity`` runs every artifact against it; ``io_spec`` describes the
inputs and outputs.
"""

from caloflow.export.errors import ExportError, ParityError
from caloflow.export.formats import DEFAULT_FORMATS, FILENAMES, ExportedArtifact, export_sampler, io_spec
from caloflow.export.parity import DEFAULT_ATOL_MEV, DEFAULT_MEAN_RTOL, DEFAULT_RTOL, check_parity, reference_sampler
from caloflow.export.runners import load_runner

__all__ = [
    "DEFAULT_ATOL_MEV",
    "DEFAULT_FORMATS",
    "DEFAULT_MEAN_RTOL",
    "DEFAULT_RTOL",
    "FILENAMES",
    "ExportError",
    "ExportedArtifact",
    "ParityError",
    "check_parity",
    "export_sampler",
    "io_spec",
    "load_runner",
    "reference_sampler",
]

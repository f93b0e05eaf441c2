"""L2LFlows for the ILD ECAL (method note ``shared/design/l2lflows-method.md``): flow-I over the layer energies,
one conditional flow per layer on a lateral crop with the previous layers as context, the threshold-aware
renormalisation, distilled IAF students, one-graph export. The flows, the distillation loss, the stages and
the export code are the project's; this package holds only L2LFlows' factorisation, conditions and loop."""

from caloflow.families.l2lflows.context import context_width, context_widths, layer_context
from caloflow.families.l2lflows.crop import LateralCrop, axis_cells, centred_crop
from caloflow.families.l2lflows.models import LayerFlows, make_flow1, make_layer_students, make_layer_teachers
from caloflow.families.l2lflows.presets import L2L_PRESET_NAMES, L2LPreset, get_l2l_preset
from caloflow.families.l2lflows.renormalize import renormalize
from caloflow.families.l2lflows.sampler import L2LSampler
from caloflow.families.l2lflows.transforms import L2LPreprocessing

__all__ = [
    "L2L_PRESET_NAMES",
    "L2LPreprocessing",
    "L2LPreset",
    "L2LSampler",
    "LateralCrop",
    "LayerFlows",
    "axis_cells",
    "centred_crop",
    "context_width",
    "context_widths",
    "get_l2l_preset",
    "layer_context",
    "make_flow1",
    "make_layer_students",
    "make_layer_teachers",
    "renormalize",
]

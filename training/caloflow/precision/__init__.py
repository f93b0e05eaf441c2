"""Precision modes behind a fidelity gate: ``gate`` measures a mode against ``fp32-strict`` and float64 and
returns the record that ``caloflow repo gate`` writes into the version's manifest (``extra.precision_gates``)."""

from caloflow.precision.gate import GateSettings, GateShape, Runner, evaluate_gate, gate_model_version

__all__ = ["GateSettings", "GateShape", "Runner", "evaluate_gate", "gate_model_version"]

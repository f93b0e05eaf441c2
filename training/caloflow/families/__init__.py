"""Model families built on the shared flows, training, distillation and export code.

Each family holds only what is its own: its factorisation, its conditioning, its presets and its
generation loop (CaloFlow for Dataset 1 lives in :mod:`caloflow.sampler` and :mod:`caloflow.training`).
"""

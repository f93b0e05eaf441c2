"""Training of flow-I, the MAF teacher and the distilled IAF student (``caloflow train``)."""

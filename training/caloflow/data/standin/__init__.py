"""The stand-in shower generator: a seeded, physics-parametrised model of CaloChallenge Dataset 1.

**Not Geant4.** The real Dataset 1 files cannot be fetched where this project is built and tested,
so the project carries this fast, reproducible stand-in, writing files in exactly the Dataset 1
format and geometry, labelled "stand-in, not Geant4" in their attributes
(``shared/design/standin-showers.md`` is the specification).

* Photons (:mod:`.photon`): GFlash longitudinal and radial profiles (:mod:`.gflash`), random conversion
  depth, dead material, sampling fluctuations, discrete spots (:mod:`.lateral`).
* Pions (:mod:`.pion`): MIP track to the first hard interaction, Groom-like fluctuating EM fraction,
  narrow EM and wide hadronic parts with h/e < 1, large stochastic terms, small isolated deposits.
* Depth layout of the detector (:mod:`.detector`), profile integration (:mod:`.longitudinal`),
  fluctuation helpers (:mod:`.fluctuations`); seeding and chunking (:mod:`.generator`); files
  (:mod:`.files`).
"""

from caloflow.data.standin.files import standin_attrs, write_standin_file
from caloflow.data.standin.generator import GENERATOR_NAME, GENERATOR_VERSION, StandinError, iter_standin_showers

__all__ = [
    "GENERATOR_NAME",
    "GENERATOR_VERSION",
    "StandinError",
    "iter_standin_showers",
    "standin_attrs",
    "write_standin_file",
]

// CaloFlowFastSimModel: how a Geant4 fast-simulation model would use the caloflow client.
//
// DoIt() does not simulate anything: it queues the particle (energy for the server; entry position and
// direction for placing the hits later), kills the primary and books its energy as deposited. Flush(),
// called by Geant4 once per event after all tracks are done, fetches every queued shower of the event in
// ONE Generate call (EventBatcher, per-shower energies) and deposits them as hits, in DoIt order.
//
// Written against g4_stand_in.hpp. With Geant4 (>= 11.1, for the Flush() hook):
//   - derive from G4VFastSimulationModel; attach to the calorimeter's G4Region (G4FastSimulationManager)
//   - IsApplicable: particle.GetPDGEncoding() (22 for the photon model, +-211 for the pion model)
//   - ModelTrigger: fastTrack.GetPrimaryTrack()->GetKineticEnergy() inside the model's trained range
//   - DoIt: fastStep.KillPrimaryTrack(); fastStep.ProposePrimaryTrackPathLength(0.);
//           fastStep.ProposeTotalEnergyDeposited(energy); remember fastTrack.GetPrimaryTrackLocalPosition(),
//           GetPrimaryTrackLocalDirection() and the envelope's touchable - the G4FastTrack is gone by Flush()
//   - Flush: for every voxel with energy, place a G4FastHit(position, energy) through the calorimeter's
//           G4VFastSimSensitiveDetector (G4FastSimHitMaker needs a live G4FastTrack, so Flush() calls the
//           sensitive detector's Hit(...) with the remembered touchable instead)
//   - seed: draw it from the event's engine (G4Random::getTheEngine()->flat()) or derive it from the
//           run and event IDs, so a re-run of the event with the same Geant4 seeds gets the same showers
//   - threads: each worker thread builds its own model (G4VUserDetectorConstruction::ConstructSDandField);
//           one caloflow::Client may be shared by all of them (it is thread-safe)
#pragma once

#include <caloflow/client.hpp>
#include <caloflow/event_batcher.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "g4_stand_in.hpp"

namespace example {

// Where voxel `voxel` of a shower that entered at `entry` along `direction` lies (mm). The real one walks
// the CaloChallenge geometry (layer, radial bin, alpha bin; caloflow.data.geometry or the binning XML).
using VoxelPlacer = std::function<g4standin::ThreeVector(const g4standin::ThreeVector& entry,
                                                         const g4standin::ThreeVector& direction, std::size_t voxel)>;

struct ModelSettings {
    std::string particle;           // the server's particle ("photon", "pion")
    std::set<int> pdg_codes;        // which Geant4 particles this model takes
    double energy_min_mev = 256.0;  // ModelTrigger range: the model's trained range
    double energy_max_mev = 4194304.0;
    std::chrono::milliseconds flush_timeout{30000};
};

class CaloFlowFastSimModel : public g4standin::VFastSimulationModel {
public:
    CaloFlowFastSimModel(const caloflow::Client& client, ModelSettings settings, g4standin::HitSink& hits,
                         VoxelPlacer placer);

    bool IsApplicable(const g4standin::ParticleDefinition& particle) override;
    bool ModelTrigger(const g4standin::FastTrack& track) override;
    void DoIt(const g4standin::FastTrack& track, g4standin::FastStep& step) override;
    void Flush() override;

    // The seed of the next Flush (Geant4: from the event's random engine, at BeginOfEventAction).
    void SetEventSeed(std::uint64_t seed);
    // The last Flush's header (model, version, artifact sha256, seed) - for the event's provenance record.
    caloflow::StreamHeader last_header() const;

private:
    struct Entry {
        g4standin::ThreeVector position_mm;
        g4standin::ThreeVector direction;
    };

    ModelSettings settings_;
    caloflow::EventBatcher batcher_;
    g4standin::HitSink& hits_;
    VoxelPlacer placer_;
    mutable std::mutex mutex_;  // guards entries_, seed_, last_header_; keeps entries_ in batcher order
    std::vector<Entry> entries_;
    std::uint64_t seed_ = 0;
    caloflow::StreamHeader last_header_;
};

}  // namespace example

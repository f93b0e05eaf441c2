#include "fast_sim_model.hpp"

#include <stdexcept>
#include <utility>

namespace example {

namespace {

caloflow::Request Template(const ModelSettings& settings) {
    caloflow::Request request;
    request.particle = settings.particle;
    return request;
}

}  // namespace

CaloFlowFastSimModel::CaloFlowFastSimModel(const caloflow::Client& client, ModelSettings settings,
                                           g4standin::HitSink& hits, VoxelPlacer placer)
    : g4standin::VFastSimulationModel("CaloFlow_" + settings.particle),
      settings_(std::move(settings)),
      batcher_(client, Template(settings_)),
      hits_(hits),
      placer_(std::move(placer)) {}

bool CaloFlowFastSimModel::IsApplicable(const g4standin::ParticleDefinition& particle) {
    return settings_.pdg_codes.count(particle.GetPDGEncoding()) > 0;
}

bool CaloFlowFastSimModel::ModelTrigger(const g4standin::FastTrack& track) {
    // Outside the trained range the server refuses (or extrapolates): leave such particles to full simulation.
    return track.kinetic_energy_mev >= settings_.energy_min_mev && track.kinetic_energy_mev <= settings_.energy_max_mev;
}

void CaloFlowFastSimModel::DoIt(const g4standin::FastTrack& track, g4standin::FastStep& step) {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        const std::size_t row = batcher_.Add(static_cast<float>(track.kinetic_energy_mev));
        if (row != entries_.size()) {  // Add and entries_ move together under mutex_
            throw std::logic_error("CaloFlowFastSimModel: batcher and entries out of step");
        }
        entries_.push_back({track.position_mm, track.direction});
    }
    // Geant4: also fastStep.ProposePrimaryTrackPathLength(0.).
    step.KillPrimaryTrack();
    step.ProposeTotalEnergyDeposited(track.kinetic_energy_mev);
}

void CaloFlowFastSimModel::SetEventSeed(std::uint64_t seed) {
    std::lock_guard<std::mutex> lock(mutex_);
    seed_ = seed;
}

caloflow::StreamHeader CaloFlowFastSimModel::last_header() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return last_header_;
}

void CaloFlowFastSimModel::Flush() {
    std::vector<Entry> entries;
    caloflow::ShowerBatch batch;
    {
        // Geant4 calls Flush() on the event's own thread after its tracks are done, so no DoIt runs now;
        // the lock keeps the entries and the batcher's queue taken together all the same.
        std::lock_guard<std::mutex> lock(mutex_);
        entries.swap(entries_);
        batch = batcher_.Flush(seed_, caloflow::Deadline::After(settings_.flush_timeout));
        last_header_ = batch.header;
    }
    // A failed Flush throws caloflow::ServerError; Geant4: G4Exception(..., EventMustBeAborted, ...).
    for (std::size_t row = 0; row < batch.size(); ++row) {
        const float* shower = batch.shower(row);
        for (std::size_t voxel = 0; voxel < batch.n_voxels(); ++voxel) {
            if (shower[voxel] != 0.0f) {
                const g4standin::ThreeVector where = placer_(entries[row].position_mm, entries[row].direction, voxel);
                hits_.make(g4standin::FastHit{shower[voxel], where}, row, voxel);
            }
        }
    }
}

}  // namespace example

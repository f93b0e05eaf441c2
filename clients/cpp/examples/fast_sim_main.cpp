// caloflow-fast-sim-example: one simulated "event" through CaloFlowFastSimModel, without Geant4.
//
//   caloflow-fast-sim-example --server HOST:8001 --particle photon --energies-mev 1000,65536,4096 --seed 7 [--out FILE]
//
// Each energy is one particle entering the calorimeter: ModelTrigger + DoIt per particle (queued), then one
// Flush() for the event (one Generate call). Prints, per particle, its energy, the energy its hits carry
// and their number; --out writes the deposited voxel energies as raw float32 [particles, n_voxels], which
// equal the showers of one per-shower request with the same energies and seed.
#include <caloflow/client.hpp>

#include <cstdio>
#include <fstream>
#include <map>
#include <vector>

#include "arguments.hpp"
#include "fast_sim_model.hpp"

namespace {

using caloflow::tools::Arguments;
using caloflow::tools::UsageError;

// Collects hits per (particle, voxel): what the calorimeter's sensitive detector would book.
class VoxelHits : public g4standin::HitSink {
public:
    void make(const g4standin::FastHit& hit, std::size_t particle, std::size_t voxel) override {
        voxels_[particle][voxel] += static_cast<float>(hit.energy_mev);
        ++hits_[particle];
    }
    float Energy(std::size_t particle, std::size_t voxel) const {
        const auto row = voxels_.find(particle);
        if (row == voxels_.end()) return 0.0f;
        const auto cell = row->second.find(voxel);
        return cell == row->second.end() ? 0.0f : cell->second;
    }
    double Sum(std::size_t particle) const {
        double sum = 0;
        const auto row = voxels_.find(particle);
        if (row != voxels_.end()) {
            for (const auto& cell : row->second) sum += cell.second;
        }
        return sum;
    }
    std::size_t Hits(std::size_t particle) const {
        const auto found = hits_.find(particle);
        return found == hits_.end() ? 0 : found->second;
    }

private:
    std::map<std::size_t, std::map<std::size_t, float>> voxels_;
    std::map<std::size_t, std::size_t> hits_;
};

// Placeholder geometry: voxel k one mm deeper along the direction. Real placement: the CaloChallenge binning.
g4standin::ThreeVector PlaceAlongDirection(const g4standin::ThreeVector& entry, const g4standin::ThreeVector& direction,
                                           std::size_t voxel) {
    const double depth = static_cast<double>(voxel);
    return {entry.x + depth * direction.x, entry.y + depth * direction.y, entry.z + depth * direction.z};
}

example::ModelSettings SettingsFor(const std::string& particle) {
    example::ModelSettings settings;
    settings.particle = particle;
    if (particle == "photon") {
        settings.pdg_codes = {22};
    } else if (particle == "pion") {
        settings.pdg_codes = {211, -211};
    } else {
        throw UsageError("--particle: expected photon or pion, got '" + particle + "'");
    }
    return settings;
}

int Run(const Arguments& args) {
    const std::string particle_name = args.text("particle").value_or("photon");
    const std::vector<float> energies = args.numbers("energies-mev");
    if (energies.empty()) {
        throw UsageError("--energies-mev: give one energy per particle of the event");
    }
    const caloflow::Client client(args.text("server").value_or("localhost:8001"));
    VoxelHits hits;
    example::ModelSettings settings = SettingsFor(particle_name);
    const int pdg = *settings.pdg_codes.begin();
    example::CaloFlowFastSimModel model(client, settings, hits, PlaceAlongDirection);
    model.SetEventSeed(args.unsigned_integer("seed").value_or(1));

    const g4standin::ParticleDefinition definition{particle_name, pdg};
    std::size_t queued = 0;
    for (std::size_t i = 0; i < energies.size(); ++i) {
        const g4standin::FastTrack track{&definition, energies[i], {0.0, 0.0, 1500.0}, {0.0, 0.0, 1.0}};
        g4standin::FastStep step;
        if (model.IsApplicable(definition) && model.ModelTrigger(track)) {
            model.DoIt(track, step);
            ++queued;
        }
    }
    if (queued != energies.size()) {
        throw UsageError("--energies-mev: every energy must lie in the model's range for this example");
    }
    model.Flush();  // Geant4 calls this at the end of the event

    const caloflow::StreamHeader header = model.last_header();
    std::printf("flushed=%zu model=%s version=%u seed=%llu n_voxels=%u\n", queued, header.model.c_str(), header.version,
                static_cast<unsigned long long>(header.seed), header.n_voxels);
    for (std::size_t i = 0; i < energies.size(); ++i) {
        std::printf("particle=%zu energy_mev=%.3f deposited_mev=%.3f hits=%zu\n", i, static_cast<double>(energies[i]),
                    hits.Sum(i), hits.Hits(i));
    }
    if (const auto path = args.text("out")) {
        std::vector<float> voxels(energies.size() * header.n_voxels, 0.0f);
        for (std::size_t i = 0; i < energies.size(); ++i) {
            for (std::size_t v = 0; v < header.n_voxels; ++v) voxels[i * header.n_voxels + v] = hits.Energy(i, v);
        }
        std::ofstream out(*path, std::ios::binary | std::ios::trunc);
        out.write(reinterpret_cast<const char*>(voxels.data()), static_cast<std::streamsize>(voxels.size() * sizeof(float)));
        if (!out) throw std::runtime_error("--out: cannot write '" + *path + "'");
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        const Arguments args(argc, argv, {"server", "particle", "energies-mev", "seed", "out"}, {});
        return Run(args);
    } catch (const UsageError& error) {
        std::fprintf(stderr, "caloflow-fast-sim-example: %s\n", error.what());
        return 2;
    } catch (const caloflow::ServerError& error) {
        std::fprintf(stderr, "caloflow-fast-sim-example: server error %s: %s\n", error.code_name().c_str(),
                     error.server_message().c_str());
        return 1;
    } catch (const std::exception& error) {
        std::fprintf(stderr, "caloflow-fast-sim-example: %s\n", error.what());
        return 1;
    }
}

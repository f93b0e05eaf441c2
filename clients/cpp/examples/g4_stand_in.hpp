// A minimal stand-in for the Geant4 classes a fast-simulation model touches, so the example compiles and
// runs without Geant4. Each type names the Geant4 class it stands for; the member functions keep Geant4's
// names where one exists, so porting the example is a matter of swapping the includes.
#pragma once

#include <cstddef>
#include <string>
#include <utility>

namespace g4standin {

// G4ThreeVector (CLHEP::Hep3Vector), in mm.
struct ThreeVector {
    double x = 0, y = 0, z = 0;
};

// G4ParticleDefinition: GetParticleName(), GetPDGEncoding().
struct ParticleDefinition {
    std::string name;
    int pdg = 0;
    const std::string& GetParticleName() const { return name; }
    int GetPDGEncoding() const { return pdg; }
};

// G4FastTrack: GetPrimaryTrack()->GetKineticEnergy() (MeV), GetPrimaryTrack()->GetPosition(),
// GetPrimaryTrack()->GetMomentumDirection(), in the envelope's frame via GetPrimaryTrackLocalPosition().
struct FastTrack {
    const ParticleDefinition* particle = nullptr;
    double kinetic_energy_mev = 0;
    ThreeVector position_mm;
    ThreeVector direction;
};

// G4FastStep: what DoIt tells the tracking about the primary.
struct FastStep {
    bool primary_killed = false;
    double total_energy_deposited_mev = 0;
    void KillPrimaryTrack() { primary_killed = true; }
    void ProposeTotalEnergyDeposited(double energy_mev) { total_energy_deposited_mev = energy_mev; }
};

// G4FastHit: an energy deposit at a position.
struct FastHit {
    double energy_mev = 0;
    ThreeVector position_mm;
};

// Where hits go: stands for G4FastSimHitMaker::make(G4FastHit, G4FastTrack) and the calorimeter's
// G4VFastSimSensitiveDetector. `particle` and `voxel` are carried for the example's bookkeeping only.
class HitSink {
public:
    virtual ~HitSink() = default;
    virtual void make(const FastHit& hit, std::size_t particle, std::size_t voxel) = 0;
};

// G4VFastSimulationModel: IsApplicable, ModelTrigger, DoIt, and Flush (Geant4 >= 11.1 calls every model's
// Flush() from G4EventManager once the event's tracks are done, via G4GlobalFastSimulationManager::Flush()).
class VFastSimulationModel {
public:
    explicit VFastSimulationModel(std::string name) : name_(std::move(name)) {}
    virtual ~VFastSimulationModel() = default;
    virtual bool IsApplicable(const ParticleDefinition& particle) = 0;
    virtual bool ModelTrigger(const FastTrack& track) = 0;
    virtual void DoIt(const FastTrack& track, FastStep& step) = 0;
    virtual void Flush() {}
    const std::string& GetName() const { return name_; }

private:
    std::string name_;
};

}  // namespace g4standin

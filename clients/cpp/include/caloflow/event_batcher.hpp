// EventBatcher: collect the showers one simulation event needs, fetch them all in one Generate call.
//
// This is the shape of a Geant4 fast-simulation model: DoIt() is called once per particle that enters
// the calorimeter and only queues it (Add); at the end of the event Flush() asks the server for every
// queued shower at once, with per-shower energies (energies_mev), and returns them in the order they
// were added. One call per event instead of one per particle amortises the network round trip and lets
// the server run the model on a full batch.
//
// Thread safety: Add, pending and Flush may be called from any threads at once (one mutex guards the
// queue). Flush takes the queue atomically: a shower added while a Flush is in flight goes to the next
// Flush. Indices returned by Add count from 0 again after each Flush.
#pragma once

#include <caloflow/client.hpp>

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <optional>
#include <vector>

namespace caloflow {

class EventBatcher {
public:
    // request_template names the model or particle (and optionally version, chunk size, extrapolation);
    // its energy fields are ignored. client must outlive the batcher.
    EventBatcher(const Client& client, Request request_template);

    // Queue one shower at energy_mev; returns its row in the next Flush's batch.
    std::size_t Add(float energy_mev);

    // Showers queued for the next Flush.
    std::size_t pending() const;

    // Fetch every queued shower in one call (seeded: the same seed and energies give the same showers
    // on a deterministic server). An empty queue returns an empty batch without calling the server.
    // On error (ServerError, ProtocolError) the taken queue is discarded: the event is lost and should be
    // aborted (Geant4: G4RunManager::AbortEvent), as the indices handed out since then start from 0.
    ShowerBatch Flush(std::optional<std::uint64_t> seed = std::nullopt, Deadline deadline = Deadline::None());

private:
    const Client& client_;
    Request template_;
    mutable std::mutex mutex_;
    std::vector<float> energies_mev_;
};

}  // namespace caloflow

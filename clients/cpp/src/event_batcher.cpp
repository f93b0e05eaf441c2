#include <caloflow/event_batcher.hpp>

#include <utility>

namespace caloflow {

EventBatcher::EventBatcher(const Client& client, Request request_template)
    : client_(client), template_(std::move(request_template)) {
    template_.energy_mev.reset();
    template_.count.reset();
    template_.energies_mev.clear();
    template_.start_index = 0;
}

std::size_t EventBatcher::Add(float energy_mev) {
    std::lock_guard<std::mutex> lock(mutex_);
    energies_mev_.push_back(energy_mev);
    return energies_mev_.size() - 1;
}

std::size_t EventBatcher::pending() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return energies_mev_.size();
}

ShowerBatch EventBatcher::Flush(std::optional<std::uint64_t> seed, Deadline deadline) {
    Request request = template_;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        request.energies_mev.swap(energies_mev_);
    }
    if (request.energies_mev.empty()) {
        return ShowerBatch{};
    }
    if (seed) {
        request.seed = seed;
    }
    return client_.Generate(request, deadline);  // outside the lock: Add never waits for the network
}

}  // namespace caloflow

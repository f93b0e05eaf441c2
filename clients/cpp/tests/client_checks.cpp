// caloflow-client-checks: library behaviour that the command-line program does not show, checked against
// a live server (tests/test_client_cpp.py runs it). Exit 0 when the check holds, 1 with a reason when not.
//
//   --check cancel   an asynchronous call cancelled after its first chunk ends with CANCELLED
//   --check batcher  an EventBatcher fed from several threads returns every shower at the row Add gave it,
//                    bit-identical to one synchronous per-shower call in that order, and so does GenerateAsync
#include <caloflow/client.hpp>
#include <caloflow/event_batcher.hpp>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "arguments.hpp"

namespace {

using caloflow::tools::Arguments;

int Fail(const std::string& why) {
    std::fprintf(stderr, "check failed: %s\n", why.c_str());
    return 1;
}

bool SameBits(const std::vector<float>& a, const std::vector<float>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

int CheckCancel(const caloflow::Client& client, const std::string& particle) {
    caloflow::Request request;
    request.particle = particle;
    request.energy_mev = 1000.0;
    request.count = 1000000;
    request.seed = 5;
    request.chunk_showers = 64;
    caloflow::AsyncGenerate call = client.GenerateAsync(request, caloflow::Deadline::After(std::chrono::seconds(120)));
    // Wait for progress, not for time: cancel once the first chunk has arrived.
    while (call.showers_received() == 0 &&
           call.wait_for(std::chrono::milliseconds(1)) != std::future_status::ready) {
    }
    const std::uint64_t at_cancel = call.showers_received();
    call.Cancel();
    try {
        const caloflow::ShowerBatch batch = call.get();
        return Fail("the call completed (" + std::to_string(batch.size()) + " showers) instead of being cancelled");
    } catch (const caloflow::ServerError& error) {
        if (error.code() != grpc::StatusCode::CANCELLED) {
            return Fail(std::string("expected CANCELLED, got ") + error.what());
        }
        std::printf("cancelled code=%s received_at_cancel=%llu of=%llu\n", error.code_name().c_str(),
                    static_cast<unsigned long long>(at_cancel), static_cast<unsigned long long>(*request.count));
    }
    return 0;
}

int CheckBatcher(const caloflow::Client& client, const std::string& particle) {
    caloflow::Request base;
    base.particle = particle;
    caloflow::EventBatcher batcher(client, base);
    constexpr int kThreads = 4;
    constexpr int kPerThread = 25;
    std::mutex mutex;
    std::vector<std::pair<std::size_t, float>> added;  // (row Add returned, energy)
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&, t]() {
            for (int k = 0; k < kPerThread; ++k) {
                const float energy = 1000.0f + 250.0f * static_cast<float>(t) + static_cast<float>(k);
                const std::size_t row = batcher.Add(energy);
                std::lock_guard<std::mutex> lock(mutex);
                added.emplace_back(row, energy);
            }
        });
    }
    for (std::thread& thread : threads) thread.join();
    if (batcher.pending() != kThreads * kPerThread) return Fail("pending() != showers added");

    const caloflow::ShowerBatch batch = batcher.Flush(11);
    if (batcher.pending() != 0) return Fail("Flush left showers queued");
    if (batch.size() != added.size()) return Fail("Flush returned the wrong number of showers");
    std::vector<float> in_row_order(added.size());
    for (const auto& [row, energy] : added) {
        if (batch.incident_energies_mev[row] != energy) return Fail("row " + std::to_string(row) + " has another energy");
        in_row_order[row] = energy;
    }
    caloflow::Request same = base;
    same.energies_mev = in_row_order;
    same.seed = 11;
    if (!SameBits(client.Generate(same).showers, batch.showers)) return Fail("batcher showers differ from one call");
    if (!SameBits(client.GenerateAsync(same).get().showers, batch.showers)) return Fail("async showers differ");
    if (!batcher.Flush().showers.empty()) return Fail("an empty Flush returned showers");
    std::printf("batcher showers=%zu threads=%d n_voxels=%zu in_order=true\n", batch.size(), kThreads, batch.n_voxels());
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        const Arguments args(argc, argv, {"check", "server", "particle"}, {});
        const caloflow::Client client(args.text("server").value_or("localhost:8001"));
        const std::string check = args.text("check").value_or("");
        const std::string particle = args.text("particle").value_or("photon");
        if (check == "cancel") return CheckCancel(client, particle);
        if (check == "batcher") return CheckBatcher(client, particle);
        return Fail("--check: expected cancel or batcher, got '" + check + "'");
    } catch (const std::exception& error) {
        return Fail(error.what());
    }
}

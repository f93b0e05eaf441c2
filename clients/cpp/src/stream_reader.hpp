// Reading one Generate stream (header, data chunks, trailer) into a BatchAssembly, which holds the rows of
// every stream of one call and says what to ask for when a broken stream is resumed. Private to the library.
#pragma once

#include <caloflow/client.hpp>

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <cstdint>
#include <string>

#include "caloflow/v1/showers.grpc.pb.h"

namespace caloflow {

// The rows received so far, checked as they arrive: every chunk must start where the last one ended.
class BatchAssembly {
public:
    explicit BatchAssembly(Request request);

    // The request for the next stream: the original one for the first, then the remaining showers from
    // the first one not received, pinned to the first stream's model, version and seed.
    ::caloflow::v1::GenerateRequest NextRequest() const;

    // A stream's header: the first sizes the batch; a resumed one must agree with it.
    void OnHeader(const ::caloflow::v1::StreamHeader& header);
    // A data chunk, appended in order.
    void OnChunk(const ::caloflow::v1::ShowerChunk& chunk);

    // Every shower index the first header announced has arrived.
    bool complete() const { return has_header_ && received_ == batch_.header.count; }
    std::uint64_t next_index() const { return batch_.header.start_index + received_; }
    std::uint64_t received() const { return received_; }

    // The finished batch (throws ProtocolError when rows are missing).
    ShowerBatch Finish(std::uint32_t resumes);

private:
    Request request_;
    ShowerBatch batch_;
    bool has_header_ = false;
    std::uint64_t received_ = 0;
};

// Read one stream into assembly; throws ServerError for a non-OK status (with next_index from the trailer
// or the "caloflow-next-index" trailing metadata) and ProtocolError for a malformed stream. progress, when
// given, is set to the showers received so far.
void ReadStream(::caloflow::v1::ShowerService::Stub& stub, grpc::ClientContext& context,
                const ::caloflow::v1::GenerateRequest& request, BatchAssembly& assembly,
                std::atomic<std::uint64_t>* progress);

}  // namespace caloflow

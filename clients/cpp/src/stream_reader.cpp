// One Generate stream, checked message by message: the rows it carries must continue the batch exactly,
// and the trailer's count, next_index and sha256 must match what arrived, so a short or reordered stream
// is an error rather than silently wrong showers.
#include "stream_reader.hpp"

#include <cstdlib>
#include <cstring>
#include <limits>
#include <optional>
#include <utility>

#include "sha256.hpp"

namespace caloflow {

namespace pb = ::caloflow::v1;

namespace {

constexpr const char* kNextIndexKey = "caloflow-next-index";

// Raw little-endian float32 into host floats (memcpy: no aliasing UB; byte swap on big-endian hosts).
void CopyLittleEndianFloats(const std::string& bytes, float* out) {
    std::memcpy(out, bytes.data(), bytes.size());
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    auto* words = reinterpret_cast<unsigned char*>(out);
    for (std::size_t i = 0; i + 3 < bytes.size(); i += 4) {
        std::swap(words[i], words[i + 3]);
        std::swap(words[i + 1], words[i + 2]);
    }
#endif
}

StreamHeader FromProto(const pb::StreamHeader& header) {
    StreamHeader out;
    out.model = header.model();
    out.version = header.version();
    out.particle = header.particle();
    out.artifact_sha256 = header.artifact_sha256();
    out.seed = header.seed();
    out.seed_drawn = header.seed_drawn();
    out.start_index = header.start_index();
    out.count = header.count();
    out.n_voxels = header.n_voxels();
    out.chunk_showers = header.chunk_showers();
    out.deterministic = header.deterministic();
    out.extrapolated = header.extrapolated();
    out.standin = header.standin();
    // A server from before datasets states none: its models are Dataset 1's, one flat row per shower.
    out.dataset = header.dataset().empty() ? "ds1-" + header.particle() : header.dataset();
    out.shower_shape.assign(header.shower_shape().begin(), header.shower_shape().end());
    if (out.shower_shape.empty()) out.shower_shape.push_back(header.n_voxels());
    out.file_layout = header.file_layout().empty() ? "calochallenge" : header.file_layout();
    if (header.has_energy_mev()) {
        out.energy_mev = header.energy_mev();
    }
    return out;
}

void Require(bool condition, const std::string& what) {
    if (!condition) {
        throw ProtocolError("caloflow stream: " + what);
    }
}

std::optional<std::uint64_t> TrailingNextIndex(const grpc::ClientContext& context) {
    const auto& metadata = context.GetServerTrailingMetadata();
    const auto found = metadata.find(kNextIndexKey);
    if (found == metadata.end()) {
        return std::nullopt;
    }
    const std::string text(found->second.data(), found->second.size());
    char* end = nullptr;
    const unsigned long long value = std::strtoull(text.c_str(), &end, 10);
    if (text.empty() || end != text.c_str() + text.size()) {
        return std::nullopt;
    }
    return static_cast<std::uint64_t>(value);
}

}  // namespace

// ---------------------------------------------------------------------------------------- BatchAssembly
BatchAssembly::BatchAssembly(Request request) : request_(std::move(request)) {}

pb::GenerateRequest BatchAssembly::NextRequest() const {
    pb::GenerateRequest out;
    out.set_allow_extrapolation(request_.allow_extrapolation);
    out.set_chunk_showers(request_.chunk_showers);
    if (!has_header_) {
        out.set_model(request_.model);
        out.set_particle(request_.particle);
        out.set_dataset(request_.dataset);
        if (request_.model_version) out.set_model_version(*request_.model_version);
        if (request_.energy_mev) out.set_energy_mev(*request_.energy_mev);
        if (request_.count) out.set_count(*request_.count);
        if (request_.seed) out.set_seed(*request_.seed);
        out.set_start_index(request_.start_index);
        *out.mutable_energies_mev() = {request_.energies_mev.begin(), request_.energies_mev.end()};
        return out;
    }
    // Resume: the same artifact and seed, from the first shower not received.
    const StreamHeader& first = batch_.header;
    out.set_model(first.model);
    out.set_model_version(std::to_string(first.version));
    out.set_seed(first.seed);
    out.set_start_index(next_index());
    if (request_.energies_mev.empty()) {
        if (request_.energy_mev) out.set_energy_mev(*request_.energy_mev);
        out.set_count(first.count - received_);
    } else {
        *out.mutable_energies_mev() = {request_.energies_mev.begin() + static_cast<std::ptrdiff_t>(received_),
                                       request_.energies_mev.end()};
    }
    return out;
}

void BatchAssembly::OnHeader(const pb::StreamHeader& proto) {
    StreamHeader header = FromProto(proto);
    Require(proto.dtype() == "float32-le", "unsupported dtype '" + proto.dtype() + "'");
    if (!has_header_) {
        Require(header.n_voxels > 0, "header has n_voxels 0");
        Require(header.count <= std::numeric_limits<std::size_t>::max() / 4 / header.n_voxels,
                "header count too large for this machine");
        batch_.header = std::move(header);
        batch_.showers.resize(static_cast<std::size_t>(batch_.header.count) * batch_.header.n_voxels);
        batch_.incident_energies_mev.reserve(static_cast<std::size_t>(batch_.header.count));
        has_header_ = true;
        return;
    }
    const StreamHeader& first = batch_.header;
    Require(header.model == first.model && header.version == first.version, "resumed stream changed model");
    Require(header.seed == first.seed && header.n_voxels == first.n_voxels, "resumed stream changed seed or n_voxels");
    Require(header.start_index == next_index(), "resumed stream starts at the wrong index");
    Require(header.count == first.count - received_, "resumed stream has the wrong count");
}

void BatchAssembly::OnChunk(const pb::ShowerChunk& chunk) {
    Require(has_header_, "data chunk before the header");
    const std::uint64_t n = chunk.n_showers();
    Require(chunk.start_index() == next_index(), "data chunk out of order");
    Require(n <= batch_.header.count - received_, "more showers than the header announced");
    Require(chunk.data().size() == n * batch_.header.n_voxels * sizeof(float), "data chunk has the wrong size");
    Require(static_cast<std::uint64_t>(chunk.incident_energy_mev_size()) == n, "chunk energies do not match n_showers");
    CopyLittleEndianFloats(chunk.data(), batch_.showers.data() + received_ * batch_.header.n_voxels);
    batch_.incident_energies_mev.insert(batch_.incident_energies_mev.end(), chunk.incident_energy_mev().begin(),
                                        chunk.incident_energy_mev().end());
    received_ += n;
}

ShowerBatch BatchAssembly::Finish(std::uint32_t resumes) {
    Require(complete(), "the call ended before every shower arrived");
    batch_.resumes = resumes;
    return std::move(batch_);
}

// ------------------------------------------------------------------------------------------ ReadStream
namespace {

struct StreamState {
    bool header_seen = false;
    std::optional<pb::StreamTrailer> trailer;
    std::uint64_t rows = 0;
    Sha256 digest;
};

void OnMessage(const pb::ShowerChunk& message, StreamState& stream, BatchAssembly& assembly) {
    Require(!stream.trailer, "message after the trailer");
    switch (message.marker_case()) {
        case pb::ShowerChunk::kHeader:
            Require(!stream.header_seen, "second header");
            assembly.OnHeader(message.header());
            stream.header_seen = true;
            break;
        case pb::ShowerChunk::kTrailer:
            stream.trailer = message.trailer();
            break;
        default:
            Require(stream.header_seen, "data chunk before the header");
            stream.digest.Update(message.data());
            assembly.OnChunk(message);
            stream.rows += message.n_showers();
    }
}

void CheckTrailer(const StreamState& stream, const BatchAssembly& assembly) {
    Require(stream.header_seen, "the stream ended without a header");
    Require(stream.trailer.has_value(), "the stream ended without a trailer");
    const pb::StreamTrailer& trailer = *stream.trailer;
    Require(trailer.status() == "ok", "trailer status '" + trailer.status() + "' on an OK call");
    Require(trailer.showers_sent() == stream.rows, "trailer showers_sent differs from the showers received");
    Require(trailer.next_index() == assembly.next_index(), "trailer next_index differs from the showers received");
    Require(trailer.sha256() == stream.digest.HexDigest(), "trailer sha256 differs from the data received");
}

}  // namespace

void ReadStream(pb::ShowerService::Stub& stub, grpc::ClientContext& context, const pb::GenerateRequest& request,
                BatchAssembly& assembly, std::atomic<std::uint64_t>* progress) {
    std::unique_ptr<grpc::ClientReader<pb::ShowerChunk>> reader = stub.Generate(&context, request);
    StreamState stream;
    pb::ShowerChunk message;
    try {
        while (reader->Read(&message)) {
            OnMessage(message, stream, assembly);
            if (progress != nullptr) {
                progress->store(assembly.received());
            }
        }
    } catch (...) {
        context.TryCancel();  // a malformed stream: stop the server's work, end the call, report the first error
        reader->Finish();
        throw;
    }
    const grpc::Status status = reader->Finish();
    if (!status.ok()) {
        std::optional<std::uint64_t> next_index = TrailingNextIndex(context);
        if (stream.trailer) {
            next_index = stream.trailer->next_index();
        }
        throw ServerError(status.error_code(), status.error_message(), next_index);
    }
    CheckTrailer(stream, assembly);
}

}  // namespace caloflow

// caloflow C++ client: streamed, seeded calorimeter-shower generation from a caloflow-serve server
// (native gRPC API, proto/caloflow/v1/showers.proto).
//
// Thread safety: a Client is immutable after construction; every method is const and may be called from
// any number of threads at once (a grpc::Channel and its stub are thread-safe). Each call has its own
// grpc::ClientContext. AsyncGenerate is safe to Cancel() from any thread while another waits on it.
//
// The public header names no generated protobuf type, so users compile against this header and link
// caloflow_client without running protoc themselves.
#pragma once

#include <grpcpp/support/status_code_enum.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <future>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace caloflow {

// Options fixed when the channel is made.
struct ClientOptions {
    // gRPC's default receive limit is 4 MiB; a data chunk is about 2 MiB by default, but a caller asking
    // for large chunk_showers needs more.
    int max_receive_message_bytes = 64 * 1024 * 1024;
    // TLS: use_tls with root_certificates_pem empty trusts the system roots.
    bool use_tls = false;
    std::string root_certificates_pem;
    // Resumption: a stream that ends UNAVAILABLE (server draining, connection lost), or CANCELLED without
    // the caller cancelling it (a shutting-down server cancels calls), is resumed at its next_index with
    // the same seed, at most max_resumes times per call, after resume_backoff (doubled
    // for each further resume, at most 5 s). The channel reconnects meanwhile, to any address the target
    // resolves to, so a target listing several servers resumes on another one.
    int max_resumes = 3;
    std::chrono::milliseconds resume_backoff{200};
};

// One Generate request: the homogeneous form (energy_mev + count) or the per-shower form (energies_mev).
struct Request {
    std::string model;     // a model name ("caloflow_photon") ...
    std::string particle;  // ... or a particle ("photon", "pion": Dataset 1's short forms) ...
    std::string dataset;   // ... or a dataset ("ds2-electron", "ild-photon"); at least one
    std::optional<std::string> model_version;
    std::optional<double> energy_mev;
    std::optional<std::uint64_t> count;
    std::vector<float> energies_mev;  // energies_mev[k] is the energy of shower start_index + k
    std::optional<std::uint64_t> seed;  // unset: the server draws one and reports it in the header
    std::uint64_t start_index = 0;
    bool allow_extrapolation = false;
    std::uint32_t chunk_showers = 0;  // 0: the server's default (about 2 MiB per chunk)
};

// The stream header: which model generated the showers and how to reproduce them.
struct StreamHeader {
    std::string model;
    std::uint32_t version = 0;
    std::string particle;
    std::string artifact_sha256;
    std::uint64_t seed = 0;
    bool seed_drawn = false;
    std::uint64_t start_index = 0;
    std::uint64_t count = 0;
    std::uint32_t n_voxels = 0;
    std::uint32_t chunk_showers = 0;
    bool deterministic = false;
    bool extrapolated = false;
    bool standin = false;  // trained on stand-in data, not Geant4
    std::optional<double> energy_mev;
    std::string dataset;                      // "ds1-photon", "ds2-electron", "ild-photon" ...
    std::vector<std::uint32_t> shower_shape;  // one shower's natural shape ({n_voxels}, or {30, 30, 30} for ILD)
    std::string file_layout;                  // the dataset's official HDF5 layout: "calochallenge" or "ild"
};

// The showers of one call, row-major [size(), n_voxels] float32 MeV, in request order.
struct ShowerBatch {
    StreamHeader header;  // of the first stream; a resumed stream must agree on model, version and seed
    std::vector<float> showers;
    std::vector<float> incident_energies_mev;
    std::uint32_t resumes = 0;  // streams resumed after UNAVAILABLE

    std::size_t size() const { return incident_energies_mev.size(); }
    std::size_t n_voxels() const { return header.n_voxels; }
    // Row i (n_voxels floats); i < size().
    const float* shower(std::size_t i) const { return showers.data() + i * header.n_voxels; }
};

// A point in time after which a call fails with DEADLINE_EXCEEDED; None() never expires.
class Deadline {
public:
    using Clock = std::chrono::system_clock;
    static Deadline None() { return Deadline(std::nullopt); }
    static Deadline At(Clock::time_point when) { return Deadline(when); }
    template <class Rep, class Period>
    static Deadline After(std::chrono::duration<Rep, Period> timeout) {
        return Deadline(Clock::now() + std::chrono::duration_cast<Clock::duration>(timeout));
    }
    const std::optional<Clock::time_point>& when() const { return when_; }
    bool expired() const { return when_.has_value() && Clock::now() >= *when_; }

private:
    explicit Deadline(std::optional<Clock::time_point> when) : when_(when) {}
    std::optional<Clock::time_point> when_;
};

// A call that ended with a non-OK gRPC status: its code, its name ("INVALID_ARGUMENT") and the server's
// message (which names the offending request field). what() is "CODE: message".
class ServerError : public std::runtime_error {
public:
    ServerError(grpc::StatusCode code, std::string message, std::optional<std::uint64_t> next_index = std::nullopt);
    grpc::StatusCode code() const { return code_; }
    const std::string& code_name() const { return code_name_; }
    const std::string& server_message() const { return server_message_; }
    // The first shower index not received, when the server reported one (resume there, same seed).
    const std::optional<std::uint64_t>& next_index() const { return next_index_; }

private:
    grpc::StatusCode code_;
    std::string code_name_;
    std::string server_message_;
    std::optional<std::uint64_t> next_index_;
};

// The stream broke the protocol (chunk out of order, wrong size, checksum mismatch): a bug, not a retry.
class ProtocolError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// The name of a gRPC status code ("DEADLINE_EXCEEDED").
std::string StatusCodeName(grpc::StatusCode code);

// Cancels a call from another thread; shared by the call and whoever may cancel it.
class CallControl {
public:
    CallControl();
    ~CallControl();
    CallControl(const CallControl&) = delete;
    CallControl& operator=(const CallControl&) = delete;
    // Cancel the call (now or when it starts); it then fails with ServerError(CANCELLED). Idempotent.
    void Cancel();
    bool cancelled() const;
    // Showers received so far (progress; safe to read from any thread).
    std::uint64_t showers_received() const { return showers_received_.load(); }

private:
    friend class CallControlAccess;  // the library's calls (src/client.cpp)
    struct State;
    std::unique_ptr<State> state_;
    std::atomic<std::uint64_t> showers_received_{0};
};

// A call running on its own thread: get() waits and returns the batch or throws its error.
class AsyncGenerate {
public:
    AsyncGenerate(std::future<ShowerBatch> future, std::shared_ptr<CallControl> control);
    // Dropping a handle whose result was never taken cancels the call and waits for it to wind down.
    ~AsyncGenerate();
    AsyncGenerate(AsyncGenerate&&) noexcept = default;
    AsyncGenerate& operator=(AsyncGenerate&&) = delete;  // would drop a running call without cancelling it
    // Cancel the call; get() then throws ServerError(CANCELLED) unless it had already finished.
    void Cancel() { control_->Cancel(); }
    // Once only (std::future semantics).
    ShowerBatch get() { return future_.get(); }
    std::future_status wait_for(std::chrono::milliseconds timeout) const { return future_.wait_for(timeout); }
    std::uint64_t showers_received() const { return control_->showers_received(); }

private:
    std::future<ShowerBatch> future_;
    std::shared_ptr<CallControl> control_;
};

// One model version the server has loaded (ListModels).
struct ModelVersionInfo {
    std::string model;
    std::string particle;
    std::string dataset;
    std::uint32_t version = 0;
    bool is_default = false;
    bool particle_default = false;
    bool dataset_default = false;  // a request naming only the dataset gets this model
    std::string artifact_sha256;
    std::string backend;
    std::string device;
    std::uint32_t n_voxels = 0;
    double energy_min_mev = 0;
    double energy_max_mev = 0;
    bool standin = false;
    bool deterministic = false;
    std::uint64_t max_count = 0;
};

class Client {
public:
    // target: "host:port" or any gRPC target URI ("ipv4:127.0.0.1:8001,127.0.0.1:8011").
    explicit Client(const std::string& target, ClientOptions options = {});
    ~Client();
    Client(Client&&) noexcept;
    Client& operator=(Client&&) noexcept;

    // Generate and wait. Throws ServerError (any non-OK status, including DEADLINE_EXCEEDED and
    // CANCELLED) or ProtocolError. control, when given, lets another thread cancel and watch progress.
    ShowerBatch Generate(const Request& request, Deadline deadline = Deadline::None(),
                         CallControl* control = nullptr) const;

    // Generate on a new thread; the returned handle cancels it. The call keeps the channel alive, so the
    // Client may be destroyed before it ends.
    AsyncGenerate GenerateAsync(Request request, Deadline deadline = Deadline::None()) const;

    // The loaded models, one entry per model version.
    std::vector<ModelVersionInfo> ListModels(Deadline deadline = Deadline::None()) const;

private:
    struct Impl;
    std::shared_ptr<const Impl> impl_;
};

}  // namespace caloflow

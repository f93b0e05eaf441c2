// Client: channel set-up, the resume loop, and ListModels. One stream's reading is stream_reader.cpp.
#include <caloflow/client.hpp>

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <utility>

#include "caloflow/v1/showers.grpc.pb.h"
#include "stream_reader.hpp"

namespace caloflow {

namespace pb = ::caloflow::v1;

namespace {

std::shared_ptr<grpc::ChannelCredentials> Credentials(const ClientOptions& options) {
    if (!options.use_tls) {
        return grpc::InsecureChannelCredentials();
    }
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = options.root_certificates_pem;
    return grpc::SslCredentials(ssl);
}

void SetDeadline(grpc::ClientContext& context, const Deadline& deadline) {
    if (deadline.when()) {
        context.set_deadline(*deadline.when());
    }
}

}  // namespace

// ------------------------------------------------------------------------------------------- CallControl
struct CallControl::State {
    std::mutex mutex;
    std::condition_variable changed;         // Cancel() wakes a backoff
    grpc::ClientContext* context = nullptr;  // the attempt in flight, if any
    bool cancelled = false;
};

// The library's view of a CallControl's private state (the attempt in flight, the progress counter).
class CallControlAccess {
public:
    using State = CallControl::State;
    static State* StateOf(CallControl* control) { return control != nullptr ? control->state_.get() : nullptr; }
    static std::atomic<std::uint64_t>* ProgressOf(CallControl* control) {
        return control != nullptr ? &control->showers_received_ : nullptr;
    }
};
using ControlState = CallControlAccess::State;

CallControl::CallControl() : state_(std::make_unique<State>()) {}
CallControl::~CallControl() = default;

void CallControl::Cancel() {
    std::lock_guard<std::mutex> lock(state_->mutex);
    state_->cancelled = true;
    if (state_->context != nullptr) {
        state_->context->TryCancel();
    }
    state_->changed.notify_all();
}

bool CallControl::cancelled() const {
    std::lock_guard<std::mutex> lock(state_->mutex);
    return state_->cancelled;
}

namespace {

// Registers an attempt's context with a CallControl for its lifetime, so Cancel() reaches it.
class AttemptRegistration {
public:
    AttemptRegistration(ControlState* state, grpc::ClientContext& context) : state_(state) {
        if (state_ == nullptr) {
            return;
        }
        std::lock_guard<std::mutex> lock(state_->mutex);
        if (state_->cancelled) {
            throw ServerError(grpc::StatusCode::CANCELLED, "cancelled by the client");
        }
        state_->context = &context;
    }
    ~AttemptRegistration() {
        if (state_ != nullptr) {
            std::lock_guard<std::mutex> lock(state_->mutex);
            state_->context = nullptr;
        }
    }
    AttemptRegistration(const AttemptRegistration&) = delete;
    AttemptRegistration& operator=(const AttemptRegistration&) = delete;

private:
    ControlState* state_;
};

// Wait before resume number `resume` (0, 1, ...): backoff doubled each time, at most 5 s, never past the
// deadline (the next attempt then reports it), and cut short by Cancel().
void Backoff(std::chrono::milliseconds backoff, int resume, const Deadline& deadline, ControlState* control) {
    const auto wait = std::min<std::chrono::milliseconds>(backoff * (1LL << std::min(resume, 10)), std::chrono::seconds(5));
    auto until = Deadline::Clock::now() + wait;
    if (deadline.when()) {
        until = std::min(until, *deadline.when());
    }
    if (control == nullptr) {
        std::this_thread::sleep_until(until);
        return;
    }
    std::unique_lock<std::mutex> lock(control->mutex);
    control->changed.wait_until(lock, until, [control]() { return control->cancelled; });
}

// UNAVAILABLE (a draining server, a lost connection), or a CANCELLED the caller did not ask for: a gRPC
// server that is shutting down cancels the calls that reach it meanwhile, and the next attempt may reach
// another server (or this one restarted). Also an HTTP/2 stream reset (gRPC reports it as INTERNAL "Received
// RST_STREAM"): what an L7 proxy such as Envoy sends when the server behind it dies mid-stream.
bool Resumable(const ServerError& error, const CallControl* control) {
    const bool cancelled_here = control != nullptr && control->cancelled();
    const bool stream_reset = error.code() == grpc::StatusCode::INTERNAL &&
                              error.server_message().find("RST_STREAM") != std::string::npos;
    return !cancelled_here && (error.code() == grpc::StatusCode::UNAVAILABLE ||
                               error.code() == grpc::StatusCode::CANCELLED || stream_reset);
}

}  // namespace

// ----------------------------------------------------------------------------------------- AsyncGenerate
AsyncGenerate::AsyncGenerate(std::future<ShowerBatch> future, std::shared_ptr<CallControl> control)
    : future_(std::move(future)), control_(std::move(control)) {}

AsyncGenerate::~AsyncGenerate() {
    // Nobody will read the result: stop the call rather than let the future's destructor wait for all of it.
    if (future_.valid() && control_) {
        control_->Cancel();
    }
}

// ---------------------------------------------------------------------------------------------- Client
// Shared by the Client and its asynchronous calls, so a call in flight keeps the channel alive.
struct Client::Impl {
    ClientOptions options;
    std::shared_ptr<grpc::Channel> channel;
    std::unique_ptr<pb::ShowerService::Stub> stub;

    ShowerBatch Generate(const Request& request, const Deadline& deadline, CallControl* control) const;
};

ShowerBatch Client::Impl::Generate(const Request& request, const Deadline& deadline, CallControl* control) const {
    BatchAssembly assembly(request);
    ControlState* control_state = CallControlAccess::StateOf(control);
    for (int resumes = 0;; ++resumes) {
        grpc::ClientContext context;
        SetDeadline(context, deadline);
        AttemptRegistration registration(control_state, context);
        try {
            ReadStream(*stub, context, assembly.NextRequest(), assembly, CallControlAccess::ProgressOf(control));
        } catch (const ServerError& error) {
            if (!Resumable(error, control) || resumes >= options.max_resumes) {
                throw;
            }
            if (assembly.complete()) {  // every shower arrived; only the end of the call was lost
                return assembly.Finish(static_cast<std::uint32_t>(resumes));
            }
            Backoff(options.resume_backoff, resumes, deadline, control_state);
            continue;
        }
        return assembly.Finish(static_cast<std::uint32_t>(resumes));
    }
}

Client::Client(const std::string& target, ClientOptions options) {
    auto impl = std::make_shared<Impl>();
    grpc::ChannelArguments arguments;
    arguments.SetMaxReceiveMessageSize(options.max_receive_message_bytes);
    impl->channel = grpc::CreateCustomChannel(target, Credentials(options), arguments);
    impl->stub = pb::ShowerService::NewStub(impl->channel);
    impl->options = std::move(options);
    impl_ = std::move(impl);
}

Client::~Client() = default;
Client::Client(Client&&) noexcept = default;
Client& Client::operator=(Client&&) noexcept = default;

ShowerBatch Client::Generate(const Request& request, Deadline deadline, CallControl* control) const {
    return impl_->Generate(request, deadline, control);
}

AsyncGenerate Client::GenerateAsync(Request request, Deadline deadline) const {
    auto control = std::make_shared<CallControl>();
    auto future = std::async(std::launch::async, [impl = impl_, request = std::move(request), deadline, control]() {
        return impl->Generate(request, deadline, control.get());
    });
    return AsyncGenerate(std::move(future), control);
}

std::vector<ModelVersionInfo> Client::ListModels(Deadline deadline) const {
    grpc::ClientContext context;
    SetDeadline(context, deadline);
    pb::ListModelsResponse response;
    const grpc::Status status = impl_->stub->ListModels(&context, pb::ListModelsRequest(), &response);
    if (!status.ok()) {
        throw ServerError(status.error_code(), status.error_message());
    }
    std::vector<ModelVersionInfo> infos;
    for (const pb::ModelInfo& model : response.models()) {
        for (const pb::ModelVersionInfo& version : model.versions()) {
            ModelVersionInfo info;
            info.model = model.name();
            info.particle = model.particle();
            info.dataset = model.dataset().empty() ? "ds1-" + model.particle() : model.dataset();
            info.dataset_default = model.dataset().empty() ? model.particle_default() : model.dataset_default();
            info.version = version.version();
            info.is_default = version.version() == model.default_version();
            info.particle_default = model.particle_default();
            info.artifact_sha256 = version.artifact_sha256();
            info.backend = version.backend();
            info.device = version.device();
            info.n_voxels = version.n_voxels();
            info.energy_min_mev = version.energy_min_mev();
            info.energy_max_mev = version.energy_max_mev();
            info.standin = version.standin();
            info.deterministic = version.deterministic();
            info.max_count = version.max_count();
            infos.push_back(std::move(info));
        }
    }
    return infos;
}

}  // namespace caloflow

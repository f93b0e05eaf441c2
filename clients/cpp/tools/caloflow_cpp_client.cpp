// caloflow-cpp-client: generate showers over the native gRPC API, write them as raw float32 and print
// count, time and showers/s.
//
//   caloflow-cpp-client --server HOST:8001 --particle photon --energy-mev 65536 --count 10000 --seed 1 --out FILE
//
// Exit status: 0 done, 1 the server (or the stream) failed - stderr names the gRPC code and the server's
// message -, 2 bad command line.
#include <caloflow/client.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>

#include "arguments.hpp"

namespace {

using caloflow::tools::Arguments;
using caloflow::tools::UsageError;

constexpr const char* kUsage = R"(usage: caloflow-cpp-client [--server HOST:PORT] (--dataset D | --particle P | --model M) [--model-version V]
           (--energy-mev E --count N | --energies-mev E1,E2,...) [--seed S] [--start-index I]
           [--chunk-showers N] [--allow-extrapolation] [--deadline-ms MS] [--retries N]
           [--tls [--ca-cert PEM]] [--out FILE]
       caloflow-cpp-client [--server HOST:PORT] --list-models

Generates showers over caloflow-serve's native gRPC API (default server localhost:8001), writes them to FILE
as raw little-endian float32, row-major [count, n_voxels] in MeV, and prints count, time and showers/s.
)";

std::string ReadFile(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        throw UsageError("--ca-cert: cannot read '" + path + "'");
    }
    std::ostringstream text;
    text << in.rdbuf();
    return text.str();
}

caloflow::ClientOptions OptionsFrom(const Arguments& args) {
    caloflow::ClientOptions options;
    options.use_tls = args.has("tls") || args.has("ca-cert");
    if (const auto path = args.text("ca-cert")) {
        options.root_certificates_pem = ReadFile(*path);
    }
    if (const auto retries = args.unsigned_integer("retries")) {
        options.max_resumes = static_cast<int>(std::min<std::uint64_t>(*retries, 1000));
    }
    return options;
}

caloflow::Request RequestFrom(const Arguments& args) {
    caloflow::Request request;
    request.model = args.text("model").value_or("");
    request.particle = args.text("particle").value_or("");
    request.dataset = args.text("dataset").value_or("");
    request.model_version = args.text("model-version");
    request.energy_mev = args.number("energy-mev");
    request.count = args.unsigned_integer("count");
    request.energies_mev = args.numbers("energies-mev");
    request.seed = args.unsigned_integer("seed");
    request.start_index = args.unsigned_integer("start-index").value_or(0);
    request.allow_extrapolation = args.has("allow-extrapolation");
    const auto chunk = args.unsigned_integer("chunk-showers").value_or(0);
    if (chunk > 0xffffffffULL) {
        throw UsageError("--chunk-showers: at most 4294967295");
    }
    request.chunk_showers = static_cast<std::uint32_t>(chunk);
    return request;  // the server validates the combination and names the field it rejects
}

caloflow::Deadline DeadlineFrom(const Arguments& args) {
    const auto milliseconds = args.unsigned_integer("deadline-ms");
    return milliseconds ? caloflow::Deadline::After(std::chrono::milliseconds(*milliseconds))
                        : caloflow::Deadline::None();
}

void WriteRaw(const std::string& path, const caloflow::ShowerBatch& batch) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    // The batch holds host floats; on the (little-endian) hosts this builds for they are float32-le.
    out.write(reinterpret_cast<const char*>(batch.showers.data()),
              static_cast<std::streamsize>(batch.showers.size() * sizeof(float)));
    if (!out) {
        throw std::runtime_error("--out: cannot write '" + path + "'");
    }
}

void PrintHeader(const caloflow::StreamHeader& h) {
    std::printf("model=%s version=%u particle=%s artifact_sha256=%s seed=%llu n_voxels=%u deterministic=%s standin=%s\n",
                h.model.c_str(), h.version, h.particle.c_str(), h.artifact_sha256.c_str(),
                static_cast<unsigned long long>(h.seed), h.n_voxels, h.deterministic ? "true" : "false",
                h.standin ? "true" : "false");
    std::string shape;
    for (const std::uint32_t n : h.shower_shape) shape += (shape.empty() ? "" : "x") + std::to_string(n);
    std::printf("dataset=%s shower_shape=%s file_layout=%s\n", h.dataset.c_str(), shape.c_str(), h.file_layout.c_str());
    if (h.standin) {
        std::printf("note: the model was trained on stand-in data, not Geant4\n");
    }
}

int Generate(const Arguments& args) {
    const caloflow::Client client(args.text("server").value_or("localhost:8001"), OptionsFrom(args));
    const caloflow::Request request = RequestFrom(args);
    const caloflow::Deadline deadline = DeadlineFrom(args);
    const auto start = std::chrono::steady_clock::now();
    const caloflow::ShowerBatch batch = client.Generate(request, deadline);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (const auto path = args.text("out")) {
        WriteRaw(*path, batch);
    }
    PrintHeader(batch.header);
    std::printf("count=%zu time_s=%.6f showers_per_s=%.1f bytes=%zu resumes=%u\n", batch.size(), seconds,
                seconds > 0 ? static_cast<double>(batch.size()) / seconds : 0.0, batch.showers.size() * sizeof(float),
                batch.resumes);
    return 0;
}

int ListModels(const Arguments& args) {
    const caloflow::Client client(args.text("server").value_or("localhost:8001"), OptionsFrom(args));
    for (const caloflow::ModelVersionInfo& m : client.ListModels(DeadlineFrom(args))) {
        std::printf("%s version=%u%s particle=%s%s n_voxels=%u energy_mev=[%g, %g] backend=%s device=%s%s\n",
                    m.model.c_str(), m.version, m.is_default ? " (default)" : "", m.particle.c_str(),
                    m.particle_default ? " (particle default)" : "", m.n_voxels, m.energy_min_mev, m.energy_max_mev,
                    m.backend.c_str(), m.device.c_str(), m.standin ? " standin" : "");
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        const Arguments args(argc, argv,
                             {"server", "model", "particle", "dataset", "model-version", "energy-mev", "count", "energies-mev",
                              "seed", "start-index", "chunk-showers", "deadline-ms", "retries", "ca-cert", "out"},
                             {"allow-extrapolation", "tls", "list-models", "help"});
        if (args.has("help")) {
            std::fputs(kUsage, stdout);
            return 0;
        }
        return args.has("list-models") ? ListModels(args) : Generate(args);
    } catch (const UsageError& error) {
        std::fprintf(stderr, "caloflow-cpp-client: %s\n%s", error.what(), kUsage);
        return 2;
    } catch (const caloflow::ServerError& error) {
        std::fprintf(stderr, "caloflow-cpp-client: server error %s: %s\n", error.code_name().c_str(),
                     error.server_message().c_str());
        return 1;
    } catch (const std::exception& error) {
        std::fprintf(stderr, "caloflow-cpp-client: %s\n", error.what());
        return 1;
    }
}

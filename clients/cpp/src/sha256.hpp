// Incremental SHA-256 (OpenSSL EVP), to check a stream's data against its trailer. Private to the library.
#pragma once

#include <string>

namespace caloflow {

class Sha256 {
public:
    Sha256();
    ~Sha256();
    Sha256(const Sha256&) = delete;
    Sha256& operator=(const Sha256&) = delete;
    Sha256(Sha256&& other) noexcept;
    Sha256& operator=(Sha256&&) = delete;

    void Update(const std::string& bytes);
    // Lowercase hex of the bytes so far (the digest object stays usable).
    std::string HexDigest() const;

private:
    void* context_;  // EVP_MD_CTX*, kept out of this header
};

}  // namespace caloflow

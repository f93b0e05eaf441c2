#include "sha256.hpp"

#include <openssl/evp.h>

#include <new>
#include <stdexcept>

namespace caloflow {

namespace {

EVP_MD_CTX* Ctx(void* context) { return static_cast<EVP_MD_CTX*>(context); }

void Check(int ok, const char* what) {
    if (ok != 1) {
        throw std::runtime_error(std::string("sha256: ") + what + " failed");
    }
}

}  // namespace

Sha256::Sha256() : context_(EVP_MD_CTX_new()) {
    if (context_ == nullptr) {
        throw std::bad_alloc();
    }
    Check(EVP_DigestInit_ex(Ctx(context_), EVP_sha256(), nullptr), "EVP_DigestInit_ex");
}

Sha256::~Sha256() { EVP_MD_CTX_free(Ctx(context_)); }

Sha256::Sha256(Sha256&& other) noexcept : context_(other.context_) { other.context_ = nullptr; }

void Sha256::Update(const std::string& bytes) {
    Check(EVP_DigestUpdate(Ctx(context_), bytes.data(), bytes.size()), "EVP_DigestUpdate");
}

std::string Sha256::HexDigest() const {
    EVP_MD_CTX* copy = EVP_MD_CTX_new();
    if (copy == nullptr) {
        throw std::bad_alloc();
    }
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int length = 0;
    const int ok = EVP_MD_CTX_copy_ex(copy, Ctx(context_)) == 1 && EVP_DigestFinal_ex(copy, digest, &length) == 1;
    EVP_MD_CTX_free(copy);
    Check(ok ? 1 : 0, "EVP_DigestFinal_ex");
    static const char kHex[] = "0123456789abcdef";
    std::string hex;
    hex.reserve(2 * length);
    for (unsigned int i = 0; i < length; ++i) {
        hex.push_back(kHex[digest[i] >> 4]);
        hex.push_back(kHex[digest[i] & 0x0f]);
    }
    return hex;
}

}  // namespace caloflow

#include "server/auth.h"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"

namespace moe::server {
namespace {

using Json = nlohmann::json;
using Digest = std::array<unsigned char, 32>;

template <class T, void (*F)(T*)>
struct Deleter {
  void operator()(T* p) const { F(p); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY, EVP_PKEY_free>>;
using BioPtr = std::unique_ptr<BIO, Deleter<BIO, BIO_free_all>>;
using MdCtxPtr = std::unique_ptr<EVP_MD_CTX, Deleter<EVP_MD_CTX, EVP_MD_CTX_free>>;
using PkeyCtxPtr = std::unique_ptr<EVP_PKEY_CTX, Deleter<EVP_PKEY_CTX, EVP_PKEY_CTX_free>>;
using ParamBldPtr = std::unique_ptr<OSSL_PARAM_BLD, Deleter<OSSL_PARAM_BLD, OSSL_PARAM_BLD_free>>;
using ParamPtr = std::unique_ptr<OSSL_PARAM, Deleter<OSSL_PARAM, OSSL_PARAM_free>>;
using BnPtr = std::unique_ptr<BIGNUM, Deleter<BIGNUM, BN_free>>;
using EcdsaSigPtr = std::unique_ptr<ECDSA_SIG, Deleter<ECDSA_SIG, ECDSA_SIG_free>>;
using X509Ptr = std::unique_ptr<X509, Deleter<X509, X509_free>>;

enum class KeyType { kRsa, kEc };

struct VerifyKey {
  KeyType type;
  std::string kid;  // empty (a PEM key): matches a token with any kid or none
  PkeyPtr pkey;
};

struct ApiKey {
  Digest digest;  // only the digest is kept, so comparison time is independent of key length
  std::string id;
  std::vector<std::string> scopes;
};

// Drains OpenSSL's per-thread error queue into one line, so failures never leak into later calls.
std::string openssl_errors() {
  std::string out;
  while (unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out.empty() ? "no OpenSSL error reported" : out;
}

Digest sha256(std::string_view data) {
  Digest d{};
  unsigned int len = 0;
  MOE_CHECK(EVP_Digest(data.data(), data.size(), d.data(), &len, EVP_sha256(), nullptr) == 1 && len == 32,
            "SHA-256 failed: ", openssl_errors());
  return d;
}

std::string hex(const unsigned char* p, size_t n) {
  static const char kDigits[] = "0123456789abcdef";
  std::string s;
  for (size_t i = 0; i < n; ++i) {
    s += kDigits[p[i] >> 4];
    s += kDigits[p[i] & 15];
  }
  return s;
}

std::string_view trim(std::string_view s) {
  const char* kWs = " \t\r\n";
  const size_t b = s.find_first_not_of(kWs);
  if (b == std::string_view::npos) return {};
  return s.substr(b, s.find_last_not_of(kWs) - b + 1);
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i])))
      return false;
  }
  return true;
}

// Attacker-controlled header fields may appear in errors (which end up in logs): printable ASCII only.
std::string printable(std::string_view s) {
  constexpr size_t kMax = 40;
  std::string out;
  for (size_t i = 0; i < s.size() && i < kMax; ++i) out += (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
  if (s.size() > kMax) out += "...";
  return out;
}

std::string read_text_file(const std::string& path, const std::string& what) {
  std::ifstream in(path, std::ios::binary);
  MOE_CHECK(in.is_open(), what, " ", path, ": cannot open (", std::strerror(errno), ")");
  std::ostringstream ss;
  ss << in.rdbuf();
  MOE_CHECK(!in.bad(), what, " ", path, ": read error");
  return ss.str();
}

ApiKey make_api_key(std::string_view key, std::vector<std::string> scopes) {
  ApiKey k;
  k.digest = sha256(key);
  k.id = "key:" + hex(k.digest.data(), 4);
  k.scopes = scopes.empty() ? std::vector<std::string>{"admin"} : std::move(scopes);
  return k;
}

void check_key_text(std::string_view key, const std::string& where) {
  MOE_CHECK(!key.empty(), where, ": empty API key");
  MOE_CHECK(key.size() <= kMaxCredentialBytes, where, ": API key longer than ", kMaxCredentialBytes,
            " bytes");
  for (char c : key) {
    MOE_CHECK(c > 0x20 && c < 0x7f, where, ": API key contains whitespace or a non-printable byte");
  }
}

void load_key_file(const std::string& path, std::vector<ApiKey>* keys) {
  const std::string text = read_text_file(path, "API key file");
  std::istringstream in(text);
  std::string line;
  const size_t first = keys->size();
  for (int line_no = 1; std::getline(in, line); ++line_no) {
    const std::string where = str_cat("API key file ", path, ":", line_no);
    const std::string_view l = trim(line);
    if (l.empty() || l[0] == '#') continue;
    const size_t sp = l.find_first_of(" \t");
    const std::string_view key = l.substr(0, sp);
    check_key_text(key, where);
    std::vector<std::string> scopes;
    if (sp != std::string_view::npos) {
      std::string scope;
      for (char c : l.substr(sp)) {
        if (c == ',' || c == ' ' || c == '\t') {
          if (!scope.empty()) scopes.push_back(std::move(scope));
          scope.clear();
        } else {
          MOE_CHECK(c > 0x20 && c < 0x7f, where, ": scope list contains a non-printable byte");
          scope += c;
        }
      }
      if (!scope.empty()) scopes.push_back(std::move(scope));
    }
    ApiKey k = make_api_key(key, std::move(scopes));
    for (size_t i = first; i < keys->size(); ++i) {
      MOE_CHECK((*keys)[i].digest != k.digest, where, ": duplicate API key");
    }
    keys->push_back(std::move(k));
  }
  // An empty file would silently leave the server open when it is the only method configured.
  MOE_CHECK(keys->size() > first, "API key file ", path, ": contains no keys");
}

KeyType classify_key(EVP_PKEY* p, const std::string& where) {
  if (EVP_PKEY_is_a(p, "RSA")) {
    const int bits = EVP_PKEY_get_bits(p);
    MOE_CHECK(bits >= 2048, where, ": RSA key has ", bits, " bits; RS256 needs at least 2048 (RFC 7518 3.3)");
    return KeyType::kRsa;
  }
  if (EVP_PKEY_is_a(p, "EC")) {
    char group[80] = {};
    size_t len = 0;
    MOE_CHECK(EVP_PKEY_get_group_name(p, group, sizeof group, &len) == 1, where,
              ": EC key without a named curve: ", openssl_errors());
    MOE_CHECK(std::strcmp(group, "prime256v1") == 0, where, ": EC key on curve ", group,
              "; ES256 needs P-256 (prime256v1)");
    return KeyType::kEc;
  }
  const char* name = EVP_PKEY_get0_type_name(p);
  fail(where, ": unsupported key type ", name ? name : "?", " (need RSA or EC P-256)");
}

PkeyPtr load_pem_public_key(const std::string& path) {
  const std::string text = read_text_file(path, "JWT public key file");
  BioPtr bio(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())));
  MOE_CHECK(bio, "JWT public key file ", path, ": ", openssl_errors());
  PkeyPtr key(PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr));
  if (!key) {
    ERR_clear_error();
    BioPtr bio2(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())));
    X509Ptr cert(PEM_read_bio_X509(bio2.get(), nullptr, nullptr, nullptr));
    if (cert) key.reset(X509_get_pubkey(cert.get()));
  }
  if (!key) {
    ERR_clear_error();
    fail("JWT public key file ", path,
         ": no PEM public key (\"BEGIN PUBLIC KEY\") or certificate found; for a private key, extract the "
         "public one with `openssl pkey -in KEY -pubout`");
  }
  return key;
}

PkeyPtr key_from_params(const char* type, OSSL_PARAM_BLD* bld, const std::string& where) {
  ParamPtr params(OSSL_PARAM_BLD_to_param(bld));
  PkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_name(nullptr, type, nullptr));
  EVP_PKEY* raw = nullptr;
  if (!params || !ctx || EVP_PKEY_fromdata_init(ctx.get()) != 1 ||
      EVP_PKEY_fromdata(ctx.get(), &raw, EVP_PKEY_PUBLIC_KEY, params.get()) != 1) {
    fail(where, ": invalid ", type, " key: ", openssl_errors());
  }
  PkeyPtr key(raw);
  PkeyCtxPtr check(EVP_PKEY_CTX_new_from_pkey(nullptr, key.get(), nullptr));
  MOE_CHECK(check && EVP_PKEY_public_check(check.get()) == 1, where, ": invalid ", type,
            " public key: ", openssl_errors());
  return key;
}

std::string jwk_field(const Json& k, const char* name, const std::string& where) {
  MOE_CHECK(k.contains(name) && k[name].is_string(), where, ": missing string \"", name, "\"");
  std::string out;
  MOE_CHECK(base64url_decode(k[name].get<std::string>(), &out), where, ": \"", name, "\" is not base64url");
  return out;
}

void load_jwks(const std::string& path, std::vector<VerifyKey>* keys) {
  const Json j = Json::parse(read_text_file(path, "JWKS file"), nullptr, false);
  MOE_CHECK(!j.is_discarded(), "JWKS file ", path, ": not valid JSON");
  MOE_CHECK(j.is_object() && j.contains("keys") && j["keys"].is_array(), "JWKS file ", path,
            ": expected an object with a \"keys\" array");
  const size_t first = keys->size();
  for (size_t i = 0; i < j["keys"].size(); ++i) {
    const Json& k = j["keys"][i];
    const std::string where = str_cat("JWKS file ", path, ": keys[", i, "]");
    MOE_CHECK(k.is_object(), where, ": not an object");
    MOE_CHECK(k.contains("kty") && k["kty"].is_string(), where, ": missing string \"kty\"");
    const std::string kty = k["kty"].get<std::string>();
    std::string kid;
    if (k.contains("kid")) {
      MOE_CHECK(k["kid"].is_string(), where, ": \"kid\" is not a string");
      kid = k["kid"].get<std::string>();
    }
    // Keys for encryption, other algorithms or other curves are legitimately present in shared JWKS.
    if (k.contains("use") && k["use"] != "sig") continue;
    const char* wanted_alg = kty == "RSA" ? "RS256" : kty == "EC" ? "ES256" : nullptr;
    if (!wanted_alg || (k.contains("alg") && k["alg"] != wanted_alg)) continue;
    ParamBldPtr bld(OSSL_PARAM_BLD_new());
    MOE_CHECK(bld, where, ": ", openssl_errors());
    PkeyPtr pkey;
    if (kty == "RSA") {
      const std::string n = jwk_field(k, "n", where), e = jwk_field(k, "e", where);
      BnPtr bn_n(
          BN_bin2bn(reinterpret_cast<const unsigned char*>(n.data()), static_cast<int>(n.size()), nullptr));
      BnPtr bn_e(
          BN_bin2bn(reinterpret_cast<const unsigned char*>(e.data()), static_cast<int>(e.size()), nullptr));
      MOE_CHECK(bn_n && bn_e && OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_N, bn_n.get()) == 1 &&
                    OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_E, bn_e.get()) == 1,
                where, ": ", openssl_errors());
      pkey = key_from_params("RSA", bld.get(), where);
    } else {
      if (!k.contains("crv") || k["crv"] != "P-256") continue;
      const std::string x = jwk_field(k, "x", where), y = jwk_field(k, "y", where);
      MOE_CHECK(x.size() == 32 && y.size() == 32, where,
                ": P-256 \"x\" and \"y\" must be 32 bytes each, got ", x.size(), " and ", y.size());
      const std::string pub = "\x04" + x + y;
      MOE_CHECK(
          OSSL_PARAM_BLD_push_utf8_string(bld.get(), OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) == 1 &&
              OSSL_PARAM_BLD_push_octet_string(bld.get(), OSSL_PKEY_PARAM_PUB_KEY, pub.data(), pub.size()) ==
                  1,
          where, ": ", openssl_errors());
      pkey = key_from_params("EC", bld.get(), where);
    }
    const KeyType type = classify_key(pkey.get(), where);
    keys->push_back(VerifyKey{type, std::move(kid), std::move(pkey)});
  }
  MOE_CHECK(keys->size() > first, "JWKS file ", path,
            ": no usable RS256 (RSA) or ES256 (EC P-256) signing key");
}

bool verify_signature(EVP_PKEY* key, std::string_view data, std::string_view sig) {
  MdCtxPtr ctx(EVP_MD_CTX_new());
  const bool ok = ctx && EVP_DigestVerifyInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key) == 1 &&
                  EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(sig.data()), sig.size(),
                                   reinterpret_cast<const unsigned char*>(data.data()), data.size()) == 1;
  ERR_clear_error();
  return ok;
}

// JOSE carries ES256 signatures as raw R||S (RFC 7518 3.4); OpenSSL verifies DER ECDSA-Sig-Value.
bool es256_raw_to_der(std::string_view raw, std::string* der) {
  if (raw.size() != 64) return false;
  const auto* p = reinterpret_cast<const unsigned char*>(raw.data());
  EcdsaSigPtr sig(ECDSA_SIG_new());
  BIGNUM* r = BN_bin2bn(p, 32, nullptr);
  BIGNUM* s = BN_bin2bn(p + 32, 32, nullptr);
  if (!sig || !r || !s || ECDSA_SIG_set0(sig.get(), r, s) != 1) {
    BN_free(r);
    BN_free(s);
    ERR_clear_error();
    return false;
  }
  const int len = i2d_ECDSA_SIG(sig.get(), nullptr);
  if (len <= 0) return false;
  der->assign(static_cast<size_t>(len), '\0');
  auto* out = reinterpret_cast<unsigned char*>(der->data());
  return i2d_ECDSA_SIG(sig.get(), &out) == len;
}

// Reads a NumericDate claim. Returns false (with *error set) when present but not a number.
bool numeric_claim(const Json& p, const char* name, bool* present, double* value, std::string* error) {
  *present = p.contains(name);
  if (!*present) return true;
  if (!p[name].is_number()) {
    *error = str_cat("JWT \"", name, "\" claim is not a number");
    return false;
  }
  *value = p[name].get<double>();
  return true;
}

bool append_scopes(const Json& p, const char* name, std::vector<std::string>* scopes, std::string* error) {
  if (!p.contains(name)) return true;
  const Json& v = p[name];
  if (v.is_string()) {
    std::istringstream in(v.get<std::string>());
    for (std::string s; in >> s;) scopes->push_back(s);
    return true;
  }
  if (v.is_array()) {
    for (const Json& s : v) {
      if (!s.is_string()) {
        *error = str_cat("JWT \"", name, "\" claim has a non-string element");
        return false;
      }
      scopes->push_back(s.get<std::string>());
    }
    return true;
  }
  *error = str_cat("JWT \"", name, "\" claim must be a string or an array of strings");
  return false;
}

AuthResult deny(int status, std::string error) {
  AuthResult r;
  r.status = status;
  r.error = std::move(error);
  return r;
}

}  // namespace

struct Authenticator::Impl {
  AuthConfig cfg;
  std::vector<ApiKey> api_keys;
  std::vector<VerifyKey> verify_keys;

  bool jwt_enabled() const { return !cfg.jwt_secret.empty() || !verify_keys.empty(); }

  const ApiKey* match_api_key(std::string_view cred) const {
    const Digest d = sha256(cred);
    size_t found = 0;
    size_t any = 0;
    for (size_t i = 0; i < api_keys.size(); ++i) {
      const size_t eq = CRYPTO_memcmp(d.data(), api_keys[i].digest.data(), d.size()) == 0;
      const size_t mask = 0 - eq;
      found = (found & ~mask) | (i & mask);
      any |= eq;
    }
    return any ? &api_keys[found] : nullptr;
  }

  // Returns an empty string when the JWT is valid, else the reason; fills principal and scopes.
  std::string verify_jwt(std::string_view token, int64_t now, AuthResult* r) const;
};

std::string Authenticator::Impl::verify_jwt(std::string_view token, int64_t now, AuthResult* r) const {
  const size_t d1 = token.find('.');
  const size_t d2 = d1 == std::string_view::npos ? d1 : token.find('.', d1 + 1);
  if (d2 == std::string_view::npos || token.find('.', d2 + 1) != std::string_view::npos) {
    return "malformed JWT: expected 3 dot-separated parts";
  }
  std::string header_text, payload_text, sig;
  if (!base64url_decode(token.substr(0, d1), &header_text)) return "malformed JWT: header is not base64url";
  if (!base64url_decode(token.substr(d1 + 1, d2 - d1 - 1), &payload_text)) {
    return "malformed JWT: payload is not base64url";
  }
  if (!base64url_decode(token.substr(d2 + 1), &sig)) return "malformed JWT: signature is not base64url";
  const Json header = Json::parse(header_text, nullptr, false);
  if (header.is_discarded() || !header.is_object()) return "malformed JWT: header is not a JSON object";
  if (!header.contains("alg") || !header["alg"].is_string())
    return "malformed JWT: header has no \"alg\" string";
  if (header.contains("crit")) return "JWT header \"crit\" extensions are not supported";
  const std::string alg = header["alg"].get<std::string>();
  std::string kid;
  const bool has_kid = header.contains("kid");
  if (has_kid) {
    if (!header["kid"].is_string()) return "malformed JWT: \"kid\" is not a string";
    kid = header["kid"].get<std::string>();
  }
  const std::string_view signing_input = token.substr(0, d2);

  bool ok = false;
  if (alg == "HS256") {
    if (cfg.jwt_secret.empty()) return "JWT alg HS256 is not enabled (no JWT secret configured)";
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    const bool mac_ok = HMAC(EVP_sha256(), cfg.jwt_secret.data(), static_cast<int>(cfg.jwt_secret.size()),
                             reinterpret_cast<const unsigned char*>(signing_input.data()),
                             signing_input.size(), mac, &mac_len) != nullptr;
    ERR_clear_error();
    ok = mac_ok && mac_len == 32 && sig.size() == 32 && CRYPTO_memcmp(mac, sig.data(), 32) == 0;
  } else if (alg == "RS256" || alg == "ES256") {
    const KeyType type = alg == "RS256" ? KeyType::kRsa : KeyType::kEc;
    bool any_type = false;
    for (const VerifyKey& k : verify_keys) any_type = any_type || k.type == type;
    if (!any_type) {
      return str_cat("JWT alg ", alg, " is not enabled (no ", type == KeyType::kRsa ? "RSA" : "EC P-256",
                     " public key configured)");
    }
    std::string der;
    if (type == KeyType::kEc && !es256_raw_to_der(sig, &der)) {
      return "malformed JWT: ES256 signature must be 64 bytes R||S";
    }
    bool any_kid = false;
    for (const VerifyKey& k : verify_keys) {
      if (k.type != type || (has_kid && !k.kid.empty() && k.kid != kid)) continue;
      any_kid = true;
      if (verify_signature(k.pkey.get(), signing_input, type == KeyType::kEc ? der : sig)) {
        ok = true;
        break;
      }
    }
    if (!any_kid) return str_cat("JWT kid \"", printable(kid), "\" matches no configured ", alg, " key");
  } else if (alg == "none") {
    return "JWT alg \"none\" (unsigned token) is not accepted";
  } else {
    return str_cat("JWT alg \"", printable(alg), "\" is not supported (HS256, RS256 and ES256 are)");
  }
  if (!ok) return "JWT signature verification failed";

  const Json p = Json::parse(payload_text, nullptr, false);
  if (p.is_discarded() || !p.is_object()) return "malformed JWT: payload is not a JSON object";
  std::string error;
  bool present = false;
  double exp = 0, nbf = 0, iat = 0;
  const double t = static_cast<double>(now), leeway = static_cast<double>(cfg.leeway_s);
  if (!numeric_claim(p, "exp", &present, &exp, &error)) return error;
  if (!present) return "JWT has no \"exp\" claim";
  if (t >= exp + leeway) return "JWT expired";
  if (!numeric_claim(p, "nbf", &present, &nbf, &error)) return error;
  if (present && t + leeway < nbf) return "JWT not valid yet (nbf is in the future)";
  if (!numeric_claim(p, "iat", &present, &iat, &error)) return error;
  if (present && iat > t + leeway) return "JWT issued in the future (iat)";
  if (!cfg.jwt_issuer.empty() && (!p.contains("iss") || p["iss"] != cfg.jwt_issuer)) {
    return "JWT issuer (iss) does not match";
  }
  if (!cfg.jwt_audience.empty()) {
    bool aud_ok = false;
    if (p.contains("aud")) {
      const Json& aud = p["aud"];
      if (aud.is_string()) aud_ok = aud == cfg.jwt_audience;
      if (aud.is_array()) {
        for (const Json& a : aud) aud_ok = aud_ok || a == cfg.jwt_audience;
      }
    }
    if (!aud_ok) return "JWT audience (aud) does not include this server";
  }
  if (p.contains("sub")) {
    if (!p["sub"].is_string()) return "malformed JWT: \"sub\" is not a string";
    r->principal = p["sub"].get<std::string>();
  }
  if (r->principal.empty()) {
    r->principal = "jwt:" + (p.contains("iss") && p["iss"].is_string() ? p["iss"].get<std::string>() : "");
  }
  if (!append_scopes(p, "scope", &r->scopes, &error) || !append_scopes(p, "scp", &r->scopes, &error)) {
    return error;
  }
  return {};
}

Authenticator::Authenticator(AuthConfig cfg) : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.cfg = std::move(cfg);
  for (size_t i = 0; i < m.cfg.api_keys.size(); ++i) {
    const std::string& key = m.cfg.api_keys[i];
    check_key_text(key, str_cat("--api-key #", i + 1));
    m.api_keys.push_back(make_api_key(key, {}));
  }
  if (!m.cfg.api_key_file.empty()) load_key_file(m.cfg.api_key_file, &m.api_keys);
  if (!m.cfg.jwt_secret.empty()) {
    MOE_CHECK(m.cfg.jwt_secret.size() >= 32, "JWT secret is ", m.cfg.jwt_secret.size(),
              " bytes; HS256 needs at least 32 (RFC 7518 3.2)");
  }
  if (!m.cfg.jwt_public_key_file.empty()) {
    PkeyPtr key = load_pem_public_key(m.cfg.jwt_public_key_file);
    const KeyType type = classify_key(key.get(), "JWT public key file " + m.cfg.jwt_public_key_file);
    m.verify_keys.push_back(VerifyKey{type, "", std::move(key)});
  }
  if (!m.cfg.jwt_jwks_file.empty()) load_jwks(m.cfg.jwt_jwks_file, &m.verify_keys);
  MOE_CHECK(m.cfg.leeway_s >= 0, "JWT leeway must be >= 0 seconds, got ", m.cfg.leeway_s);
}

Authenticator::~Authenticator() = default;
Authenticator::Authenticator(Authenticator&&) noexcept = default;
Authenticator& Authenticator::operator=(Authenticator&&) noexcept = default;

bool Authenticator::enabled() const { return !impl_->api_keys.empty() || impl_->jwt_enabled(); }

AuthResult Authenticator::check(std::string_view authorization, std::string_view api_key_header,
                                std::string_view required_scope, int64_t now_unix_s) const {
  if (!enabled()) {
    AuthResult r;
    r.principal = "anonymous";
    r.scopes = {"admin"};
    return r;
  }
  std::string_view cred;
  bool key_only = false;
  authorization = trim(authorization);
  if (!authorization.empty()) {
    const size_t sp = authorization.find_first_of(" \t");
    if (!iequals(authorization.substr(0, sp), "Bearer")) {
      return deny(401, "Authorization header must use the Bearer scheme");
    }
    if (sp != std::string_view::npos) cred = trim(authorization.substr(sp));
    if (cred.empty()) return deny(401, "Authorization header has an empty Bearer credential");
  } else {
    cred = trim(api_key_header);
    key_only = true;
    if (cred.empty()) return deny(401, "missing credentials: send \"Authorization: Bearer <key or token>\"");
  }
  if (cred.size() > kMaxCredentialBytes) {
    return deny(401, str_cat("credential longer than ", kMaxCredentialBytes, " bytes"));
  }

  AuthResult r;
  if (const ApiKey* key = impl_->match_api_key(cred)) {
    r.principal = key->id;
    r.scopes = key->scopes;
  } else if (key_only || !impl_->jwt_enabled() ||
             (!impl_->api_keys.empty() && cred.find('.') == std::string_view::npos)) {
    return deny(401, "invalid API key");
  } else {
    std::string error = impl_->verify_jwt(cred, now_unix_s, &r);
    if (!error.empty()) return deny(401, std::move(error));
  }
  if (!required_scope.empty()) {
    bool has = false;
    for (const std::string& s : r.scopes) has = has || s == required_scope || s == "admin";
    if (!has) {
      r.status = 403;
      r.error = str_cat("credential lacks the \"", printable(required_scope), "\" scope");
    }
  }
  return r;
}

bool base64url_decode(std::string_view in, std::string* out) {
  out->clear();
  if (in.size() % 4 == 1) return false;
  out->reserve(in.size() * 3 / 4);
  uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    uint32_t v;
    if (c >= 'A' && c <= 'Z') {
      v = static_cast<uint32_t>(c - 'A');
    } else if (c >= 'a' && c <= 'z') {
      v = static_cast<uint32_t>(c - 'a' + 26);
    } else if (c >= '0' && c <= '9') {
      v = static_cast<uint32_t>(c - '0' + 52);
    } else if (c == '-') {
      v = 62;
    } else if (c == '_') {
      v = 63;
    } else {
      return false;
    }
    acc = (acc << 6) | v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out->push_back(static_cast<char>((acc >> bits) & 0xff));
    }
    acc &= (1u << bits) - 1;
  }
  // Non-zero leftover bits would let several encodings stand for one signature.
  return acc == 0;
}

std::string base64url_encode(std::string_view in) {
  static const char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  out.reserve((in.size() * 4 + 2) / 3);
  uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    acc = (acc << 8) | static_cast<unsigned char>(c);
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out += kAlphabet[(acc >> bits) & 63];
    }
    acc &= (1u << bits) - 1;
  }
  if (bits > 0) out += kAlphabet[(acc << (6 - bits)) & 63];
  return out;
}

}  // namespace moe::server

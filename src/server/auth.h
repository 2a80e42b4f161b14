// Authentication of HTTP requests to `moe serve`: static API keys (with optional scopes) and JWTs
// (HS256 with a shared secret, RS256/ES256 with a PEM public key or a JWKS file).
//
// Contract of check():
//  * The credential comes from the Authorization header ("Bearer <key-or-jwt>", scheme case-insensitive)
//    or, when that header is empty, from an x-api-key style header (API keys only there).
//  * An exact API key match wins; otherwise a token of three dot-separated parts is verified as a JWT
//    when a JWT method is configured.
//  * 401: no credential, unknown key, or an invalid/expired/malformed token. 403: the credential is valid
//    but lacks the required scope. The error never contains the credential itself.
//  * Scope "admin" implies every scope; an API key configured without scopes reports {"admin"}.
//  * JWT: the header "alg" must be one the server is configured for: HS256 only with jwt_secret, RS256
//    only with an RSA public key, ES256 only with an EC P-256 key; "none", unknown algorithms and "crit"
//    headers are rejected. The HMAC secret is only ever jwt_secret, so a token "signed" with a public
//    key's PEM text as HMAC secret fails. "exp" is required; "nbf" and "iat" are checked when present
//    (all with leeway_s). "iss" must equal jwt_issuer and "aud" (string or array) must contain
//    jwt_audience when those are configured. Scopes come from "scope" (space-separated) and/or "scp"
//    (array or space-separated string). The principal is "sub", or "jwt:" + "iss" without a "sub".
//  * Comparisons of secrets are constant-time, and every configured API key is compared on each call.
// Thread-safety: an Authenticator is immutable after construction; check() may run concurrently.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace moe::server {

struct AuthConfig {
  std::vector<std::string> api_keys{};  // --api-key (repeatable): each grants every scope
  std::string api_key_file{};  // --api-key-file: lines "KEY [scope,scope,...]"; '#' comments; no scopes = all
  std::string jwt_secret{};    // --jwt-secret: HS256 shared secret, raw bytes, at least 32 (RFC 7518 3.2)
  std::string jwt_public_key_file{};  // --jwt-public-key: PEM public key or certificate (RSA / EC P-256)
  std::string jwt_jwks_file{};        // --jwt-jwks: JWKS JSON file (RSA and EC P-256 keys, chosen by "kid")
  std::string jwt_issuer{};           // required "iss" when non-empty
  std::string jwt_audience{};         // required in "aud" (string or array) when non-empty
  int64_t leeway_s = 30;              // clock skew allowed for exp/nbf/iat
};

struct AuthResult {
  int status = 200;       // 200 ok, 401 (no/invalid credentials), 403 (valid but lacks scope)
  std::string error;      // one line naming why (never echoes the secret/token)
  std::string principal;  // "key:" + first 8 hex chars of sha256(key), or the JWT "sub"
  std::vector<std::string> scopes;
};

// Largest credential (API key or whole JWT) accepted; longer ones get 401 without being parsed.
inline constexpr size_t kMaxCredentialBytes = 8192;

class Authenticator {
 public:
  // Reads and validates the key file, PEM and JWKS; throws moe::Error naming the file and the problem.
  explicit Authenticator(AuthConfig cfg);
  ~Authenticator();
  Authenticator(Authenticator&&) noexcept;
  Authenticator& operator=(Authenticator&&) noexcept;

  // False when no API key and no JWT method is configured: check() then allows everything
  // (principal "anonymous", scopes {"admin"}).
  bool enabled() const;

  // authorization: the raw "Authorization" header value, may be empty. api_key_header: the raw value of
  // an x-api-key style header, may be empty. required_scope: empty means any valid credential.
  AuthResult check(std::string_view authorization, std::string_view api_key_header,
                   std::string_view required_scope, int64_t now_unix_s) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Strict base64url decoding (RFC 7515 section 2): alphabet [A-Za-z0-9_-], no padding, no whitespace,
// unused trailing bits must be zero. Returns false on any violation.
bool base64url_decode(std::string_view in, std::string* out);
std::string base64url_encode(std::string_view in);

}  // namespace moe::server

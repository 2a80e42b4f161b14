#include "server/auth.h"

#include <gtest/gtest.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>
#include <vector>

#include "core/error.h"

namespace moe::server {
namespace {

using Json = nlohmann::json;
constexpr int64_t kNow = 1700000000;

std::string run(const std::string& cmd) {
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) throw Error("popen failed: " + cmd);
  std::string out;
  char buf[4096];
  for (size_t n; (n = fread(buf, 1, sizeof buf, p)) > 0;) out.append(buf, n);
  const int rc = pclose(p);
  if (rc != 0) throw Error(str_cat("command failed (", rc, "): ", cmd));
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  return out;
}

void write_file(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

EVP_PKEY* load_private(const std::string& path) {
  BIO* bio = BIO_new_file(path.c_str(), "r");
  EVP_PKEY* k = PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  if (!k) throw Error("cannot load " + path);
  return k;
}

std::string der_to_raw(const std::string& der) {
  const auto* p = reinterpret_cast<const unsigned char*>(der.data());
  ECDSA_SIG* sig = d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(der.size()));
  if (!sig) throw Error("bad DER ECDSA signature");
  unsigned char raw[64];
  BN_bn2binpad(ECDSA_SIG_get0_r(sig), raw, 32);
  BN_bn2binpad(ECDSA_SIG_get0_s(sig), raw + 32, 32);
  ECDSA_SIG_free(sig);
  return std::string(reinterpret_cast<char*>(raw), 64);
}

// RS256 or ES256 (JOSE raw R||S) signature of input with a private key.
std::string sign(EVP_PKEY* key, const std::string& input) {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  size_t len = 0;
  std::string sig;
  if (EVP_DigestSignInit(ctx, nullptr, EVP_sha256(), nullptr, key) != 1 ||
      EVP_DigestSign(ctx, nullptr, &len, reinterpret_cast<const unsigned char*>(input.data()),
                     input.size()) != 1) {
    throw Error("sign init failed");
  }
  sig.resize(len);
  EVP_DigestSign(ctx, reinterpret_cast<unsigned char*>(sig.data()), &len,
                 reinterpret_cast<const unsigned char*>(input.data()), input.size());
  sig.resize(len);
  EVP_MD_CTX_free(ctx);
  return EVP_PKEY_is_a(key, "EC") ? der_to_raw(sig) : sig;
}

std::string hmac256(const std::string& secret, const std::string& input) {
  unsigned char mac[32];
  unsigned int len = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
       reinterpret_cast<const unsigned char*>(input.data()), input.size(), mac, &len);
  return std::string(reinterpret_cast<char*>(mac), len);
}

using Signer = std::function<std::string(const std::string&)>;

std::string make_token(const Json& header, const Json& payload, const Signer& signer) {
  const std::string input = base64url_encode(header.dump()) + "." + base64url_encode(payload.dump());
  return input + "." + base64url_encode(signer(input));
}

std::string bn_b64(EVP_PKEY* k, const char* name, int pad) {
  BIGNUM* bn = nullptr;
  EVP_PKEY_get_bn_param(k, name, &bn);
  std::string out(pad > 0 ? pad : BN_num_bytes(bn), '\0');
  BN_bn2binpad(bn, reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(out.size()));
  BN_free(bn);
  return base64url_encode(out);
}

Json jwk(EVP_PKEY* k, const std::string& kid) {
  if (EVP_PKEY_is_a(k, "RSA")) {
    return {{"kty", "RSA"},
            {"kid", kid},
            {"use", "sig"},
            {"alg", "RS256"},
            {"n", bn_b64(k, OSSL_PKEY_PARAM_RSA_N, 0)},
            {"e", bn_b64(k, OSSL_PKEY_PARAM_RSA_E, 0)}};
  }
  return {{"kty", "EC"},
          {"kid", kid},
          {"crv", "P-256"},
          {"x", bn_b64(k, OSSL_PKEY_PARAM_EC_PUB_X, 32)},
          {"y", bn_b64(k, OSSL_PKEY_PARAM_EC_PUB_Y, 32)}};
}

class ServerAuth : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    char tmpl[] = "/tmp/moe_auth_test_XXXXXX";
    dir_ = mkdtemp(tmpl);
    // Keys from the openssl CLI, so key encoding and PEM parsing are checked against an independent tool.
    run("openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out " + dir_ + "/rsa.pem 2>&1");
    run("openssl pkey -in " + dir_ + "/rsa.pem -pubout -out " + dir_ + "/rsa_pub.pem");
    run("openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out " + dir_ + "/ec.pem");
    run("openssl pkey -in " + dir_ + "/ec.pem -pubout -out " + dir_ + "/ec_pub.pem");
    rsa_ = load_private(dir_ + "/rsa.pem");
    ec_ = load_private(dir_ + "/ec.pem");
    rsa2_ = EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", size_t{2048});
    ec2_ = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
    ASSERT_TRUE(rsa2_ && ec2_);
  }
  static void TearDownTestSuite() {
    for (EVP_PKEY* k : {rsa_, ec_, rsa2_, ec2_}) EVP_PKEY_free(k);
    std::filesystem::remove_all(dir_);
  }

  static Json claims(Json extra = Json::object()) {
    Json p = {{"sub", "alice"}, {"exp", kNow + 600}, {"iat", kNow - 10}};
    p.update(extra);
    return p;
  }
  static Signer hs(const std::string& secret) {
    return [secret](const std::string& in) { return hmac256(secret, in); };
  }
  static Signer pk(EVP_PKEY* k) {
    return [k](const std::string& in) { return sign(k, in); };
  }
  static AuthResult bearer(const Authenticator& a, const std::string& token, std::string_view scope = "",
                           int64_t now = kNow) {
    return a.check("Bearer " + token, "", scope, now);
  }

  static inline const std::string kSecret = "0123456789abcdef0123456789abcdef-moe";
  static inline std::string dir_;
  static inline EVP_PKEY *rsa_, *ec_, *rsa2_, *ec2_;
};

TEST_F(ServerAuth, Base64urlMatchesRfc4648Vectors) {
  const std::pair<std::string, std::string> vectors[] = {
      {"", ""},           {"f", "Zg"},          {"fo", "Zm8"},          {"foo", "Zm9v"},
      {"foob", "Zm9vYg"}, {"fooba", "Zm9vYmE"}, {"foobar", "Zm9vYmFy"}, {"\xfb\xff", "-_8"}};
  for (const auto& [raw, enc] : vectors) {
    EXPECT_EQ(base64url_encode(raw), enc);
    std::string out;
    EXPECT_TRUE(base64url_decode(enc, &out)) << enc;
    EXPECT_EQ(out, raw);
  }
  std::string out;
  for (const char* bad : {"Zg==", "Zm9v+A", "Zm9v/A", "Z", "Zm9vY", "Zh", "Zm9", "Zm 9v", "Zm9v\n"}) {
    EXPECT_FALSE(base64url_decode(bad, &out)) << bad;  // padding, '+/', bad length, non-zero spare bits
  }
}

TEST_F(ServerAuth, DisabledAllowsEverything) {
  Authenticator a(AuthConfig{});
  EXPECT_FALSE(a.enabled());
  const AuthResult r = a.check("", "", "admin", kNow);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.principal, "anonymous");
}

TEST_F(ServerAuth, ApiKeys) {
  AuthConfig cfg;
  cfg.api_keys = {"sk-first-key", "sk-second-key"};
  Authenticator a(cfg);
  EXPECT_TRUE(a.enabled());
  AuthResult r = a.check("", "", "", kNow);
  EXPECT_EQ(r.status, 401);
  EXPECT_NE(r.error.find("missing"), std::string::npos) << r.error;
  r = a.check("Bearer sk-wrong-key", "", "", kNow);
  EXPECT_EQ(r.status, 401);
  EXPECT_EQ(r.error.find("sk-wrong-key"), std::string::npos) << "error echoes the credential: " << r.error;
  EXPECT_EQ(a.check("Bearer sk-first-ke", "", "", kNow).status, 401);    // prefix
  EXPECT_EQ(a.check("Bearer sk-first-keyy", "", "", kNow).status, 401);  // extension
  EXPECT_EQ(a.check("Basic sk-first-key", "", "", kNow).status, 401);    // wrong scheme
  EXPECT_EQ(a.check("Bearer", "", "", kNow).status, 401);
  r = a.check("Bearer sk-second-key", "", "chat", kNow);
  EXPECT_EQ(r.status, 200) << r.error;
  EXPECT_EQ(r.principal, "key:" + run("printf %s sk-second-key | sha256sum").substr(0, 8));
  EXPECT_EQ(a.check("  bearer   sk-first-key  ", "", "anything", kNow).status,
            200);                                                    // scheme is case-insensitive
  EXPECT_EQ(a.check("", "sk-first-key", "chat", kNow).status, 200);  // x-api-key
  EXPECT_EQ(a.check("", "sk-nope", "chat", kNow).status, 401);
  EXPECT_EQ(a.check("Bearer " + std::string(9000, 'k'), "", "", kNow).status, 401);
  EXPECT_THROW(Authenticator(AuthConfig{.api_keys = {""}}), Error);
  EXPECT_THROW(Authenticator(AuthConfig{.api_keys = {"has space"}}), Error);
}

TEST_F(ServerAuth, KeyFileWithScopes) {
  const std::string path = dir_ + "/keys.txt";
  write_file(path,
             "# moe keys\n\n"
             "sk-chat chat,embed\r\n"
             "   sk-all   \n"
             "sk-admin admin\n"
             "sk-spaced  chat , metrics  # not a comment: '#' is a scope here\n");
  Authenticator a(AuthConfig{.api_key_file = path});
  AuthResult r = a.check("Bearer sk-chat", "", "chat", kNow);
  EXPECT_EQ(r.status, 200) << r.error;
  EXPECT_EQ(r.scopes, (std::vector<std::string>{"chat", "embed"}));
  r = a.check("Bearer sk-chat", "", "metrics", kNow);
  EXPECT_EQ(r.status, 403);
  EXPECT_NE(r.error.find("metrics"), std::string::npos) << r.error;
  EXPECT_EQ(a.check("Bearer sk-all", "", "metrics", kNow).status, 200);
  EXPECT_EQ(a.check("Bearer sk-admin", "", "metrics", kNow).status, 200);
  EXPECT_EQ(a.check("Bearer sk-spaced", "", "metrics", kNow).status, 200);
  EXPECT_EQ(a.check("Bearer sk-spaced", "", "embed", kNow).status, 403);
  EXPECT_EQ(a.check("Bearer # moe keys", "", "", kNow).status, 401);
  EXPECT_EQ(a.check("Bearer sk-other", "", "", kNow).status, 401);

  auto error_of = [&](const std::string& text) {
    write_file(path, text);
    try {
      Authenticator bad(AuthConfig{.api_key_file = path});
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(error_of("a1\nb2\na1 chat\n").find(path + ":3: duplicate"), std::string::npos);
  EXPECT_NE(error_of("# only comments\n\n").find("no keys"), std::string::npos);
  EXPECT_NE(error_of("k\x01y\n").find(":1:"), std::string::npos);
  try {
    Authenticator bad(AuthConfig{.api_key_file = dir_ + "/missing.txt"});
    ADD_FAILURE() << "no error for a missing key file";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("missing.txt"), std::string::npos) << e.what();
  }
}

TEST_F(ServerAuth, PythonHs256TokenAccepted) {
  const std::string script = dir_ + "/mint.py";
  write_file(script,
             "import base64, hashlib, hmac, json, sys\n"
             "b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b'=').decode()\n"
             "h = b64(json.dumps({'alg': 'HS256', 'typ': 'JWT'}).encode())\n"
             "p = b64(json.dumps({'sub': 'py-user', 'exp': int(sys.argv[2]), 'aud': ['x', 'moe'],\n"
             "                    'scope': 'chat embed'}).encode())\n"
             "s = b64(hmac.new(sys.argv[1].encode(), (h + '.' + p).encode(), hashlib.sha256).digest())\n"
             "print(h + '.' + p + '.' + s)\n");
  const std::string token = run("python3 " + script + " '" + kSecret + "' " + std::to_string(kNow + 60));
  Authenticator a(AuthConfig{.jwt_secret = kSecret, .jwt_audience = "moe"});
  AuthResult r = bearer(a, token, "embed");
  EXPECT_EQ(r.status, 200) << r.error;
  EXPECT_EQ(r.principal, "py-user");
  EXPECT_EQ(r.scopes, (std::vector<std::string>{"chat", "embed"}));
  EXPECT_EQ(bearer(a, token, "admin").status, 403);
  const std::string other =
      run("python3 " + script + " 'another-secret-another-secret-xx' " + std::to_string(kNow + 60));
  EXPECT_EQ(bearer(a, other).status, 401);
  // And our signer agrees byte for byte with Python's for the same input.
  const std::string input = token.substr(0, token.rfind('.'));
  EXPECT_EQ(token.substr(token.rfind('.') + 1), base64url_encode(hmac256(kSecret, input)));
}

TEST_F(ServerAuth, Rfc7515AppendixA1) {
  const std::string token =
      "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9."
      "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ."
      "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
  std::string key;
  ASSERT_TRUE(base64url_decode(
      "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow", &key));
  ASSERT_EQ(key.size(), 64u);
  Authenticator a(AuthConfig{.jwt_secret = key, .jwt_issuer = "joe", .leeway_s = 0});
  AuthResult r = bearer(a, token, "", 1300819379);
  EXPECT_EQ(r.status, 200) << r.error;
  EXPECT_EQ(r.principal, "jwt:joe");  // no "sub" in this token
  r = bearer(a, token, "", 1300819380);
  EXPECT_EQ(r.status, 401);
  EXPECT_NE(r.error.find("expired"), std::string::npos) << r.error;
  Authenticator with_leeway(AuthConfig{.jwt_secret = key, .leeway_s = 30});
  EXPECT_EQ(bearer(with_leeway, token, "", 1300819409).status, 200);
  EXPECT_EQ(bearer(with_leeway, token, "", 1300819410).status, 401);
}

TEST_F(ServerAuth, TimeClaims) {
  Authenticator a(AuthConfig{.jwt_secret = kSecret, .leeway_s = 30});
  const Json h = {{"alg", "HS256"}, {"typ", "JWT"}};
  auto status = [&](const Json& p) { return bearer(a, make_token(h, p, hs(kSecret))); };
  EXPECT_EQ(status(claims()).status, 200);
  AuthResult r = status(claims({{"exp", kNow - 31}}));
  EXPECT_EQ(r.status, 401);
  EXPECT_NE(r.error.find("expired"), std::string::npos);
  EXPECT_EQ(status(claims({{"exp", kNow - 29}})).status, 200);   // within leeway
  EXPECT_EQ(status(claims({{"exp", kNow + 0.5}})).status, 200);  // NumericDate may be fractional
  r = status(claims({{"nbf", kNow + 31}}));
  EXPECT_EQ(r.status, 401);
  EXPECT_NE(r.error.find("not valid yet"), std::string::npos);
  EXPECT_EQ(status(claims({{"nbf", kNow + 29}})).status, 200);
  EXPECT_EQ(status(claims({{"iat", kNow + 3600}})).status, 401);
  Json no_exp = claims();
  no_exp.erase("exp");
  r = status(no_exp);
  EXPECT_EQ(r.status, 401);
  EXPECT_NE(r.error.find("\"exp\""), std::string::npos);
  EXPECT_EQ(status(claims({{"exp", std::to_string(kNow + 600)}})).status, 401);
  EXPECT_EQ(status(claims({{"nbf", true}})).status, 401);
}

TEST_F(ServerAuth, IssuerAndAudience) {
  Authenticator a(AuthConfig{.jwt_secret = kSecret, .jwt_issuer = "https://idp", .jwt_audience = "moe"});
  const Json h = {{"alg", "HS256"}};
  auto check = [&](const Json& p) { return bearer(a, make_token(h, p, hs(kSecret))); };
  EXPECT_EQ(check(claims({{"iss", "https://idp"}, {"aud", "moe"}})).status, 200);
  EXPECT_EQ(check(claims({{"iss", "https://idp"}, {"aud", {"other", "moe"}}})).status, 200);
  AuthResult r = check(claims({{"iss", "https://idp"}, {"aud", "other"}}));
  EXPECT_EQ(r.status, 401);
  EXPECT_NE(r.error.find("aud"), std::string::npos);
  EXPECT_EQ(check(claims({{"iss", "https://idp"}, {"aud", {"other"}}})).status, 401);
  EXPECT_EQ(check(claims({{"iss", "https://idp"}})).status, 401);
  r = check(claims({{"iss", "https://evil"}, {"aud", "moe"}}));
  EXPECT_EQ(r.status, 401);
  EXPECT_NE(r.error.find("iss"), std::string::npos);
  EXPECT_EQ(check(claims({{"aud", "moe"}})).status, 401);
}

TEST_F(ServerAuth, ScopesAndPrincipal) {
  Authenticator a(AuthConfig{.jwt_secret = kSecret});
  const Json h = {{"alg", "HS256"}};
  auto check = [&](const Json& p, std::string_view scope) {
    return bearer(a, make_token(h, p, hs(kSecret)), scope);
  };
  EXPECT_EQ(check(claims({{"scope", "chat embed"}}), "embed").status, 200);
  EXPECT_EQ(check(claims({{"scope", "chat embed"}}), "metrics").status, 403);
  EXPECT_EQ(check(claims({{"scp", {"chat", "metrics"}}}), "metrics").status, 200);
  EXPECT_EQ(check(claims({{"scp", "metrics"}}), "metrics").status, 200);
  EXPECT_EQ(check(claims({{"scope", "admin"}}), "metrics").status, 200);
  EXPECT_EQ(check(claims(), "chat").status, 403);
  EXPECT_EQ(check(claims(), "").status, 200);
  EXPECT_EQ(check(claims({{"scope", 7}}), "").status, 401);
  EXPECT_EQ(check(claims({{"scp", {"a", 1}}}), "").status, 401);
  EXPECT_EQ(check(claims({{"sub", "bob"}}), "").principal, "bob");
  EXPECT_EQ(check(claims({{"sub", 5}}), "").status, 401);
}

TEST_F(ServerAuth, BadSignatureAndEveryOneCharMutationRejected) {
  AuthConfig cfg{.jwt_secret = kSecret, .jwt_public_key_file = dir_ + "/rsa_pub.pem"};
  Authenticator a(cfg);
  Authenticator ec(AuthConfig{.jwt_public_key_file = dir_ + "/ec_pub.pem"});
  const Json p = claims({{"scope", "chat"}});
  const std::string hs_token = make_token({{"alg", "HS256"}}, p, hs(kSecret));
  const std::string rs_token = make_token({{"alg", "RS256"}}, p, pk(rsa_));
  const std::string es_token = make_token({{"alg", "ES256"}}, p, pk(ec_));
  ASSERT_EQ(bearer(a, hs_token).status, 200);
  ASSERT_EQ(bearer(a, rs_token).status, 200);
  ASSERT_EQ(bearer(ec, es_token).status, 200);
  const std::pair<const Authenticator*, std::string> cases[] = {
      {&a, hs_token}, {&a, rs_token}, {&ec, es_token}};
  for (const auto& [auth, token] : cases) {
    // One flipped byte of the decoded signature.
    const size_t dot = token.rfind('.');
    std::string sig;
    ASSERT_TRUE(base64url_decode(token.substr(dot + 1), &sig));
    sig[sig.size() / 2] ^= 0x01;
    const AuthResult r = bearer(*auth, token.substr(0, dot + 1) + base64url_encode(sig));
    EXPECT_EQ(r.status, 401);
    EXPECT_NE(r.error.find("signature"), std::string::npos) << r.error;
    // Every single-character change anywhere in the token (strict base64url: no two spellings of one value).
    for (size_t i = 0; i < token.size(); ++i) {
      for (char c : {'A', 'g', '-', '.', '='}) {
        if (token[i] == c) continue;
        std::string t = token;
        t[i] = c;
        ASSERT_EQ(bearer(*auth, t).status, 401) << "accepted mutation at " << i << " to " << c << ": " << t;
      }
    }
  }
}

TEST_F(ServerAuth, AlgNoneAndUnknownAlgsRejected) {
  Authenticator a(AuthConfig{.jwt_secret = kSecret, .jwt_public_key_file = dir_ + "/rsa_pub.pem"});
  const std::string body = base64url_encode(claims().dump());
  for (const char* alg : {"none", "None", "NONE"}) {
    const std::string head = base64url_encode(Json{{"alg", alg}}.dump());
    EXPECT_EQ(bearer(a, head + "." + body + ".").status, 401) << alg;
    EXPECT_EQ(
        bearer(a, head + "." + body + "." + base64url_encode(hmac256(kSecret, head + "." + body))).status,
        401)
        << alg;
  }
  AuthResult r = bearer(a, base64url_encode(R"({"alg":"none"})") + "." + body + ".");
  EXPECT_NE(r.error.find("none"), std::string::npos) << r.error;
  for (const char* alg : {"HS512", "RS384", "PS256", "ES384", "EdDSA", "hs256", ""}) {
    EXPECT_EQ(bearer(a, make_token({{"alg", alg}}, claims(), hs(kSecret))).status, 401) << alg;
  }
  r = bearer(a, make_token({{"alg", "HS256"}, {"crit", {"exp"}}}, claims(), hs(kSecret)));
  EXPECT_EQ(r.status, 401);
  EXPECT_NE(r.error.find("crit"), std::string::npos);
}

TEST_F(ServerAuth, AlgorithmConfusionRejected) {
  // An HS256 token whose HMAC key is the server's public key PEM (which an attacker knows).
  const std::string rsa_pem = read_file(dir_ + "/rsa_pub.pem"), ec_pem = read_file(dir_ + "/ec_pub.pem");
  const std::string forged = make_token({{"alg", "HS256"}}, claims({{"scope", "admin"}}), hs(rsa_pem));
  Authenticator rsa_only(AuthConfig{.jwt_public_key_file = dir_ + "/rsa_pub.pem"});
  AuthResult r = bearer(rsa_only, forged);
  EXPECT_EQ(r.status, 401);
  EXPECT_NE(r.error.find("HS256 is not enabled"), std::string::npos) << r.error;
  Authenticator both(AuthConfig{.jwt_secret = kSecret, .jwt_public_key_file = dir_ + "/rsa_pub.pem"});
  EXPECT_EQ(bearer(both, forged).status, 401);
  Authenticator ec_only(AuthConfig{.jwt_public_key_file = dir_ + "/ec_pub.pem"});
  EXPECT_EQ(bearer(ec_only, make_token({{"alg", "HS256"}}, claims(), hs(ec_pem))).status, 401);
  // An RS256 token against an EC key, and ES256 against an RSA key.
  r = bearer(ec_only, make_token({{"alg", "RS256"}}, claims(), pk(rsa_)));
  EXPECT_EQ(r.status, 401);
  EXPECT_NE(r.error.find("RS256 is not enabled"), std::string::npos) << r.error;
  EXPECT_EQ(bearer(rsa_only, make_token({{"alg", "ES256"}}, claims(), pk(ec_))).status, 401);
  // Header claims RS256 but the signature is ECDSA (and vice versa), with both keys configured.
  Authenticator jwks_both = [&] {
    write_file(dir_ + "/both.jwks", Json{{"keys", {jwk(rsa_, "r"), jwk(ec_, "e")}}}.dump());
    return Authenticator(AuthConfig{.jwt_jwks_file = dir_ + "/both.jwks"});
  }();
  EXPECT_EQ(bearer(jwks_both, make_token({{"alg", "RS256"}}, claims(), pk(ec_))).status, 401);
  EXPECT_EQ(bearer(jwks_both, make_token({{"alg", "ES256"}}, claims(), pk(rsa_))).status, 401);
  EXPECT_EQ(bearer(jwks_both, make_token({{"alg", "ES256"}, {"kid", "r"}}, claims(), pk(ec_))).status, 401);
}

TEST_F(ServerAuth, Es256AndRs256FromOpensslCli) {
  Authenticator ec(AuthConfig{.jwt_public_key_file = dir_ + "/ec_pub.pem"});
  Authenticator rsa(AuthConfig{.jwt_public_key_file = dir_ + "/rsa_pub.pem"});
  EXPECT_EQ(bearer(ec, make_token({{"alg", "ES256"}}, claims(), pk(ec_))).status, 200);
  EXPECT_EQ(bearer(ec, make_token({{"alg", "ES256"}}, claims(), pk(ec2_))).status, 401);  // other key
  auto cli_token = [&](const std::string& alg, const std::string& key_file) {
    const std::string input =
        base64url_encode(Json{{"alg", alg}}.dump()) + "." + base64url_encode(claims({{"sub", "cli"}}).dump());
    write_file(dir_ + "/input.txt", input);
    run("openssl dgst -sha256 -sign " + key_file + " -out " + dir_ + "/sig.bin " + dir_ + "/input.txt");
    return std::pair(input, read_file(dir_ + "/sig.bin"));
  };
  auto [rs_input, rs_sig] = cli_token("RS256", dir_ + "/rsa.pem");
  AuthResult r = bearer(rsa, rs_input + "." + base64url_encode(rs_sig));
  EXPECT_EQ(r.status, 200) << r.error;
  EXPECT_EQ(r.principal, "cli");
  auto [es_input, es_der] = cli_token("ES256", dir_ + "/ec.pem");
  r = bearer(ec, es_input + "." + base64url_encode(der_to_raw(es_der)));
  EXPECT_EQ(r.status, 200) << r.error;
  r = bearer(ec, es_input + "." + base64url_encode(es_der));  // DER is not the JOSE format
  EXPECT_EQ(r.status, 401);
  EXPECT_NE(r.error.find("64 bytes"), std::string::npos) << r.error;
  // An X.509 certificate works as the key file too.
  run("openssl req -new -x509 -key " + dir_ + "/rsa.pem -subj /CN=moe -days 1 -out " + dir_ + "/cert.pem");
  Authenticator cert(AuthConfig{.jwt_public_key_file = dir_ + "/cert.pem"});
  EXPECT_EQ(bearer(cert, rs_input + "." + base64url_encode(rs_sig)).status, 200);
}

TEST_F(ServerAuth, JwksWithTwoKids) {
  Json keys = {jwk(rsa_, "r1"),
               jwk(rsa2_, "r2"),
               jwk(ec_, "e1"),
               {{"kty", "oct"}, {"kid", "s"}, {"k", "c2VjcmV0"}},  // skipped: symmetric
               {{"kty", "RSA"}, {"kid", "enc"}, {"use", "enc"}, {"n", "AQAB"}, {"e", "AQAB"}},  // skipped
               {{"kty", "EC"}, {"kid", "p384"}, {"crv", "P-384"}, {"x", "AA"}, {"y", "AA"}}};   // skipped
  write_file(dir_ + "/keys.jwks", Json{{"keys", keys}}.dump());
  Authenticator a(AuthConfig{.jwt_jwks_file = dir_ + "/keys.jwks"});
  auto check = [&](const Json& h, EVP_PKEY* k) { return bearer(a, make_token(h, claims(), pk(k))); };
  EXPECT_EQ(check({{"alg", "RS256"}, {"kid", "r1"}}, rsa_).status, 200);
  EXPECT_EQ(check({{"alg", "RS256"}, {"kid", "r2"}}, rsa2_).status, 200);
  EXPECT_EQ(check({{"alg", "RS256"}, {"kid", "r2"}}, rsa_).status, 401);  // r1's signature under kid r2
  EXPECT_EQ(check({{"alg", "RS256"}, {"kid", "r1"}}, rsa2_).status, 401);
  AuthResult r = check({{"alg", "RS256"}, {"kid", "r3"}}, rsa_);
  EXPECT_EQ(r.status, 401);
  EXPECT_NE(r.error.find("kid"), std::string::npos);
  EXPECT_EQ(check({{"alg", "RS256"}}, rsa2_).status, 200);  // no kid: any RSA key
  EXPECT_EQ(check({{"alg", "ES256"}, {"kid", "e1"}}, ec_).status, 200);
  EXPECT_EQ(check({{"alg", "ES256"}, {"kid", "e1"}}, ec2_).status, 401);
  EXPECT_EQ(check({{"alg", "RS256"}, {"kid", 3}}, rsa_).status, 401);
}

TEST_F(ServerAuth, KeyConfigurationErrors) {
  auto error_of = [&](AuthConfig cfg) {
    try {
      Authenticator a(std::move(cfg));
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  const std::string d = dir_;
  EXPECT_NE(error_of({.jwt_secret = "short"}).find("at least 32"), std::string::npos);
  EXPECT_NE(error_of({.jwt_public_key_file = d + "/nope.pem"}).find("nope.pem"), std::string::npos);
  write_file(d + "/garbage.pem", "not a key\n");
  EXPECT_NE(error_of({.jwt_public_key_file = d + "/garbage.pem"}).find("garbage.pem"), std::string::npos);
  EXPECT_NE(error_of({.jwt_public_key_file = d + "/rsa.pem"}).find("-pubout"), std::string::npos);  // private
  run("openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:1024 2>/dev/null | openssl pkey -pubout "
      "-out " +
      d + "/rsa1024.pem");
  EXPECT_NE(error_of({.jwt_public_key_file = d + "/rsa1024.pem"}).find("2048"), std::string::npos);
  run("openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 | openssl pkey -pubout -out " + d +
      "/p384.pem");
  EXPECT_NE(error_of({.jwt_public_key_file = d + "/p384.pem"}).find("P-256"), std::string::npos);

  auto jwks_error = [&](const std::string& text) {
    write_file(d + "/bad.jwks", text);
    return error_of({.jwt_jwks_file = d + "/bad.jwks"});
  };
  EXPECT_NE(jwks_error("{").find("not valid JSON"), std::string::npos);
  EXPECT_NE(jwks_error("[]").find("\"keys\""), std::string::npos);
  EXPECT_NE(jwks_error(R"({"keys":[]})").find("no usable"), std::string::npos);
  EXPECT_NE(jwks_error(R"({"keys":[{"kty":"RSA","e":"AQAB"}]})").find("keys[0]: missing string \"n\""),
            std::string::npos);
  EXPECT_NE(jwks_error(R"({"keys":[{"kty":"RSA","n":"@@","e":"AQAB"}]})").find("base64url"),
            std::string::npos);
  Json off_curve = jwk(ec_, "e");
  off_curve["y"] = off_curve["x"];  // (x, x) is not on P-256 for this x with overwhelming probability
  EXPECT_NE(jwks_error(Json{{"keys", {off_curve}}}.dump()).find("keys[0]"), std::string::npos);
  Json short_x = jwk(ec_, "e");
  short_x["x"] = "AAAA";
  EXPECT_NE(jwks_error(Json{{"keys", {short_x}}}.dump()).find("32 bytes"), std::string::npos);
}

TEST_F(ServerAuth, ConcurrentChecksAgree) {
  write_file(dir_ + "/conc.jwks", Json{{"keys", {jwk(rsa_, "r1"), jwk(ec_, "e1")}}}.dump());
  const Authenticator a(
      AuthConfig{.api_keys = {"sk-x"}, .jwt_secret = kSecret, .jwt_jwks_file = dir_ + "/conc.jwks"});
  const std::string good[] = {make_token({{"alg", "RS256"}}, claims(), pk(rsa_)),
                              make_token({{"alg", "ES256"}}, claims(), pk(ec_)),
                              make_token({{"alg", "HS256"}}, claims(), hs(kSecret)), "sk-x"};
  const std::string bad = make_token({{"alg", "RS256"}}, claims(), pk(rsa2_));
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 40; ++i) {
        wrong += bearer(a, good[i % 4]).status != 200;
        wrong += bearer(a, bad).status != 401;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(wrong.load(), 0);
}

TEST_F(ServerAuth, MalformedTokensGive401NeverACrash) {
  const std::string d = dir_;
  write_file(d + "/mixed.jwks", Json{{"keys", {jwk(rsa_, "r1"), jwk(ec_, "e1")}}}.dump());
  Authenticator a(AuthConfig{.jwt_secret = kSecret, .jwt_jwks_file = d + "/mixed.jwks"});
  const std::string h = base64url_encode(R"({"alg":"HS256"})"), p = base64url_encode(claims().dump());
  auto signed_with = [&](const std::string& head, const std::string& body) {
    return head + "." + body + "." + base64url_encode(hmac256(kSecret, head + "." + body));
  };
  const std::pair<std::string, std::string> cases[] = {
      {"abc", "3 dot-separated"},
      {h + "." + p, "3 dot-separated"},
      {signed_with(h, p) + ".x", "3 dot-separated"},
      {".", "3 dot-separated"},
      {"..", "header"},
      {"!!." + p + ".AAAA", "header is not base64url"},
      {h + "=." + p + ".AAAA", "header is not base64url"},
      {h + ".#." + "AAAA", "payload is not base64url"},
      {h + "." + p + ".A+A", "signature is not base64url"},
      {base64url_encode("[1,2]") + "." + p + ".AA", "header is not a JSON object"},
      {base64url_encode("{\"alg\":") + "." + p + ".AA", "header is not a JSON object"},
      {base64url_encode("{\"typ\":\"JWT\"}") + "." + p + ".AA", "\"alg\""},
      {base64url_encode("{\"alg\":256}") + "." + p + ".AA", "\"alg\""},
      {signed_with(h, base64url_encode("not json")), "payload is not a JSON object"},
      {signed_with(h, base64url_encode("[\"exp\"]")), "payload is not a JSON object"},
      {signed_with(h, base64url_encode(std::string(100, '['))), "payload is not a JSON object"},
      {signed_with(h, p) + std::string(8200, 'A'), "8192"},
      {std::string("\x01\x02.\xff\xfe.\x80", 8), "header is not base64url"},
      {base64url_encode("{\"alg\":\"ES256\"}") + "." + p + "." + base64url_encode("short"), "64 bytes"},
  };
  for (const auto& [token, why] : cases) {
    const AuthResult r = bearer(a, token);
    EXPECT_EQ(r.status, 401) << token.substr(0, 80);
    EXPECT_NE(r.error.find(why), std::string::npos) << "got \"" << r.error << "\" want \"" << why << "\"";
    EXPECT_EQ(r.error.find('\n'), std::string::npos);
  }
  // With API keys configured too, a dot-less unknown credential is reported as a bad key, a JWT as a JWT.
  Authenticator mixed(AuthConfig{.api_keys = {"key.with.dots"}, .jwt_secret = kSecret});
  EXPECT_EQ(mixed.check("Bearer key.with.dots", "", "x", kNow).status, 200);
  EXPECT_EQ(mixed.check("Bearer nodots", "", "", kNow).error, "invalid API key");
  EXPECT_EQ(mixed.check("", signed_with(h, p), "", kNow).error, "invalid API key");  // x-api-key: keys only
  EXPECT_EQ(bearer(mixed, signed_with(h, p)).status, 200);
}

}  // namespace
}  // namespace moe::server

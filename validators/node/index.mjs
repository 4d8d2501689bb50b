// Validate mcpstore usage tokens offline on a self-hosted (pro tier) MCP server, with the `jose` package only.
//
//   import { UsageValidator } from "mcpstore-usage";
//   const validator = new UsageValidator("https://registry.example.com", "alice/weather");
//   try {
//     const claims = await validator.validate(bearerToken);   // { sub, mcp, tier, jti, calls?, ... }
//   } catch (refused) {
//     // refused.code: malformed, bad_algorithm, unknown_key, expired, wrong_audience, wrong_package, revoked, invalid
//   }
//
// The JWKS is fetched and cached by jose's createRemoteJWKSet (fetched again for an unknown kid, at most every
// 10 s); only EdDSA is accepted (alg "none" and HMAC are refused before a key is used); the revocation list is
// fetched at most every 30 s, so a refunded buyer is refused within a minute.
import { createRemoteJWKSet, decodeProtectedHeader, errors, jwtVerify } from "jose";

export class InvalidUsageToken extends Error {
  constructor(code, message) {
    super(`${code}: ${message}`);
    this.code = code;
  }
}

export class UsageValidator {
  constructor(applianceUrl, pkg, { audience, leeway = 60, revocationsSeconds = 30, fetchJson } = {}) {
    this.issuer = applianceUrl.replace(/\/+$/, "");
    this.pkg = pkg;
    this.audience = audience ?? `${this.issuer}/mcp/${pkg}`;
    this.leeway = leeway;
    this.revocationsMs = revocationsSeconds * 1000;
    this.fetchJson = fetchJson ?? (async (url) => (await fetch(url)).json());
    this.jwks = createRemoteJWKSet(new URL(`${this.issuer}/.well-known/jwks.json`), { cooldownDuration: 10_000 });
    this.revokedJtis = new Set();
    this.revokedSubjects = new Map();
    this.revocationsAt = -Infinity;
  }

  async validate(token) {
    let header;
    try {
      header = decodeProtectedHeader(token);
    } catch {
      throw new InvalidUsageToken("malformed", "not a JWT");
    }
    if (header.alg !== "EdDSA") throw new InvalidUsageToken("bad_algorithm", `only EdDSA is accepted, not ${header.alg}`);
    let payload;
    try {
      ({ payload } = await jwtVerify(token, this.jwks, {
        algorithms: ["EdDSA"], issuer: this.issuer, audience: this.audience, clockTolerance: this.leeway,
        requiredClaims: ["iss", "sub", "mcp", "tier", "aud", "iat", "exp", "jti"],
      }));
    } catch (error) {
      throw refusal(error);
    }
    if (payload.mcp !== this.pkg) throw new InvalidUsageToken("wrong_package", `the token is for ${payload.mcp}`);
    await this.checkRevocations(payload);
    return payload;
  }

  async checkRevocations(claims) {
    if (Date.now() - this.revocationsAt >= this.revocationsMs) {
      const list = await this.fetchJson(`${this.issuer}/.well-known/mcpstore-revocations.json`);
      this.revokedJtis = new Set(list.jti ?? []);
      this.revokedSubjects = new Map((list.subjects ?? []).map((s) => [`${s.sub} ${s.mcp}`, s.revoked_at]));
      this.revocationsAt = Date.now();
    }
    const revokedAt = this.revokedSubjects.get(`${claims.sub} ${claims.mcp}`);
    if (this.revokedJtis.has(claims.jti) || (revokedAt !== undefined && claims.iat <= revokedAt)) {
      throw new InvalidUsageToken("revoked", "the token was revoked (refund, dispute, ended access)");
    }
  }
}

function refusal(error) {
  if (error instanceof errors.JWTExpired) return new InvalidUsageToken("expired", "the token has expired");
  if (error instanceof errors.JWKSNoMatchingKey) return new InvalidUsageToken("unknown_key", "no such key in the JWKS");
  if (error instanceof errors.JWTClaimValidationFailed && error.claim === "aud") {
    return new InvalidUsageToken("wrong_audience", "the token is for another audience");
  }
  return new InvalidUsageToken("invalid", error.message);
}

// Minimal oidc-provider authorization server for the DPoP and introspection interop tests.
//
// Env:
//   RESOURCE    (required) resource indicator / JWT `aud`, e.g. http://127.0.0.1:9999/
//   SCOPES      space-separated scopes the resource server allows (default: "todos:read")
//   AT_ALG      access-token signing alg: ES256 (default) or RS256
//   AT_TTL      access-token lifetime in seconds (default: 300)
//   DPOP_NONCE  "1" to make the token endpoint require a DPoP nonce (use_dpop_nonce flow)
//   DPOP_BOUND  "0" to let rs-test get bearer tokens too (default "1": DPoP-bound only)
//   AT_FORMAT   "opaque" for opaque access tokens, to be introspected (default "jwt")
//
// Introspection (RFC 7662) and revocation (RFC 7009) are on: the resource server
// introspects as client rs-api / rs-api-secret (client_secret_basic).
//
// Prints exactly one line to stdout once listening: {"issuer":"http://127.0.0.1:PORT"}
// Everything else (oidc-provider NOTICE/WARNING lines, request log) goes to stderr.

import * as crypto from 'node:crypto';
import * as http from 'node:http';

// oidc-provider prints its NOTICE lines with console.info (stdout!). Keep stdout
// reserved for the single JSON line: route console.log/info to stderr *before*
// the library is loaded (hence the dynamic import below).
console.log = console.error;
console.info = console.error;

const { default: Provider, errors } = await import('oidc-provider');
const { exportJWK } = await import('jose');

const RESOURCE = process.env.RESOURCE;
if (!RESOURCE) {
  console.error('provider.mjs: env RESOURCE is required (e.g. http://127.0.0.1:9999/)');
  process.exit(2);
}
const SCOPES = (process.env.SCOPES || 'todos:read').split(/\s+/).filter(Boolean);
const AT_ALG = process.env.AT_ALG || 'ES256';
const AT_TTL = Number(process.env.AT_TTL || 300);
const REQUIRE_NONCE = process.env.DPOP_NONCE === '1';
const DPOP_BOUND = process.env.DPOP_BOUND !== '0';
const AT_FORMAT = process.env.AT_FORMAT || 'jwt';

function signingJwk(alg) {
  let keyObject;
  if (alg === 'ES256') {
    ({ privateKey: keyObject } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }));
  } else if (alg === 'RS256') {
    ({ privateKey: keyObject } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }));
  } else {
    throw new Error(`unsupported AT_ALG ${alg} (use ES256 or RS256)`);
  }
  return exportJWK(keyObject).then((jwk) => ({
    ...jwk, alg, use: 'sig', kid: crypto.randomUUID(),
  }));
}

const server = http.createServer();
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(0, '127.0.0.1', resolve);
});
const { port } = server.address();
const issuer = `http://127.0.0.1:${port}`;

const provider = new Provider(issuer, {
  jwks: { keys: [await signingJwk(AT_ALG)] },
  clients: [{
    client_id: 'rs-test',
    client_secret: 'rs-test-secret',
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: 'client_secret_basic',
    scope: SCOPES.join(' '),
    // Reject token requests without a DPoP proof, so every issued token is DPoP-bound.
    dpop_bound_access_tokens: DPOP_BOUND,
    id_token_signed_response_alg: AT_ALG,
  }, {
    // The resource server's own credentials, for introspection.
    client_id: 'rs-api',
    client_secret: 'rs-api-secret',
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: 'client_secret_basic',
    id_token_signed_response_alg: AT_ALG,
  }],
  clientDefaults: { id_token_signed_response_alg: AT_ALG },
  scopes: ['openid', ...SCOPES],
  // Only needed for browser flows; set anyway so nothing complains.
  cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
  ttl: {
    AccessToken: AT_TTL,
    ClientCredentials: AT_TTL,
  },
  clientBasedCORS: () => false,
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    dPoP: {
      enabled: true,
      // A nonce secret enables DPoP-Nonce issuance; requireNonce forces the
      // use_dpop_nonce round trip at the token endpoint.
      ...(REQUIRE_NONCE ? { nonceSecret: crypto.randomBytes(32), requireNonce: () => true } : {}),
    },
    resourceIndicators: {
      enabled: true,
      defaultResource: (ctx, client, oneOf) => oneOf ?? RESOURCE,
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, resourceIndicator) => {
        if (resourceIndicator !== RESOURCE) {
          throw new errors.InvalidTarget(`unknown resource ${resourceIndicator}`);
        }
        return {
          scope: SCOPES.join(' '),
          audience: RESOURCE,
          accessTokenTTL: AT_TTL,
          accessTokenFormat: AT_FORMAT,
          jwt: { sign: { alg: AT_ALG } },
        };
      },
    },
  },
});

provider.on('server_error', (ctx, err) => console.error('server_error', err));
provider.on('grant.error', (ctx, err) => console.error('grant.error', err.message, err.error_detail ?? err.error_description ?? ''));

server.on('request', provider.callback());

process.stdout.write(`${JSON.stringify({ issuer })}\n`);

// In-memory state only: nothing to flush, exit straight away.
process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));

// DPoP client for the interop test.
//
// usage: node client.mjs <issuer> <resource-url> <method> <alg>
//   alg: ES256 | Ed25519 (EdDSA is accepted as an alias for Ed25519), or "none" for a
//   bearer token without proofs (the provider must run with DPOP_BOUND=0)
//
// Gets a DPoP-bound JWT access token from <issuer>'s token endpoint (client_credentials,
// client rs-test / rs-test-secret, scope todos:read, resource = env RESOURCE or
// <resource-url>'s origin + "/"), then makes two distinct DPoP proofs for
// <method> <resource-url> carrying `ath`, and prints one JSON line:
//   {"token","token_type","proof","proof2","jkt"}
// Diagnostics go to stderr; exit code is non-zero on any failure.

import { generateKeyPair, generateProof } from 'dpop';
import { calculateJwkThumbprint, decodeJwt, decodeProtectedHeader, exportJWK } from 'jose';

function die(msg) {
  console.error(`client.mjs: ${msg}`);
  process.exit(1);
}

const [issuer, resourceUrl, method, algArg] = process.argv.slice(2);
if (!issuer || !resourceUrl || !method || !algArg) {
  die('usage: node client.mjs <issuer> <resource-url> <method> <ES256|Ed25519>');
}
const ALGS = { ES256: 'ES256', Ed25519: 'Ed25519', EdDSA: 'Ed25519', none: 'none' };
const alg = ALGS[algArg];
if (!alg) die(`unsupported alg ${algArg}`);
const bearer = alg === 'none';

const htm = method.toUpperCase();
// RFC 9449 §4.2: htu is the target URI without query and fragment.
const htuUrl = new URL(resourceUrl);
htuUrl.search = '';
htuUrl.hash = '';
const htu = htuUrl.href;
const resource = process.env.RESOURCE || `${htuUrl.origin}/`;

const CLIENT_ID = process.env.CLIENT_ID || 'rs-test';
const CLIENT_SECRET = process.env.CLIENT_SECRET || 'rs-test-secret';
const SCOPE = process.env.SCOPE || 'todos:read';

const keypair = bearer ? undefined : await generateKeyPair(alg);
const jkt = bearer
  ? undefined
  : await calculateJwkThumbprint(await exportJWK(keypair.publicKey), 'sha256');

const discovery = await fetch(`${issuer.replace(/\/$/, '')}/.well-known/openid-configuration`);
if (!discovery.ok) die(`discovery failed: HTTP ${discovery.status}`);
const { token_endpoint: tokenEndpoint } = await discovery.json();

async function tokenRequest(nonce) {
  const proof = bearer ? undefined : await generateProof(keypair, tokenEndpoint, 'POST', nonce);
  const basic = Buffer.from(
    `${encodeURIComponent(CLIENT_ID)}:${encodeURIComponent(CLIENT_SECRET)}`,
  ).toString('base64');
  return fetch(tokenEndpoint, {
    method: 'POST',
    headers: {
      authorization: `Basic ${basic}`,
      'content-type': 'application/x-www-form-urlencoded',
      accept: 'application/json',
      ...(proof ? { dpop: proof } : {}),
    },
    body: new URLSearchParams({ grant_type: 'client_credentials', scope: SCOPE, resource }),
  });
}

let res = await tokenRequest(undefined);
let body = await res.json().catch(() => ({}));
let nonce = res.headers.get('dpop-nonce') ?? undefined;
if (res.status === 400 && body.error === 'use_dpop_nonce') {
  if (!nonce) die('use_dpop_nonce without a DPoP-Nonce header');
  console.error('client.mjs: token endpoint asked for a DPoP nonce, retrying');
  res = await tokenRequest(nonce);
  body = await res.json().catch(() => ({}));
  nonce = res.headers.get('dpop-nonce') ?? nonce;
}
if (!res.ok) die(`token request failed: HTTP ${res.status} ${JSON.stringify(body)}`);

const { access_token: token, token_type: tokenType } = body;
if (tokenType !== (bearer ? 'Bearer' : 'DPoP')) die(`unexpected token_type ${tokenType}`);
if (bearer) {
  process.stdout.write(`${JSON.stringify({ token, token_type: tokenType })}\n`);
  process.exit(0);
}

// Sanity-check a JWT: cnf.jkt bound to our key. An opaque token only its issuer reads.
if (token.split('.').length === 3) {
  const claims = decodeJwt(token);
  const atHeader = decodeProtectedHeader(token);
  for (const c of ['iss', 'aud', 'exp', 'scope']) {
    if (claims[c] === undefined) die(`access token lacks ${c}: ${JSON.stringify(claims)}`);
  }
  if (claims.cnf?.jkt !== jkt) die(`cnf.jkt ${claims.cnf?.jkt} != ${jkt}`);
  if (atHeader.typ !== 'at+jwt') console.error(`client.mjs: note: access token typ is ${atHeader.typ}`);
}

// The resource server is a different server: the token endpoint's nonce does not
// apply there, so the resource proofs carry no nonce.
const proof = await generateProof(keypair, htu, htm, undefined, token);
const proof2 = await generateProof(keypair, htu, htm, undefined, token);
if (proof === proof2) die('proofs are not distinct');

process.stdout.write(`${JSON.stringify({
  token, token_type: tokenType, proof, proof2, jkt,
})}\n`);

// Revokes a token at the provider (RFC 7009), as its client rs-test.
//
// usage: node revoke.mjs <issuer> <token>
// Exit code 0 once the revocation endpoint answered 200.

const [issuer, token] = process.argv.slice(2);
const discovery = await fetch(`${issuer.replace(/\/$/, '')}/.well-known/openid-configuration`);
const { revocation_endpoint: endpoint } = await discovery.json();
const basic = Buffer.from('rs-test:rs-test-secret').toString('base64');
const res = await fetch(endpoint, {
  method: 'POST',
  headers: { authorization: `Basic ${basic}`, 'content-type': 'application/x-www-form-urlencoded' },
  body: new URLSearchParams({ token, token_type_hint: 'access_token' }),
});
if (res.status !== 200) {
  console.error(`revoke.mjs: HTTP ${res.status} ${await res.text()}`);
  process.exit(1);
}

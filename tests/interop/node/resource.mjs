// RFC 9728 discovery as a client does it, with panva's oauth4webapi: builds the metadata URL
// from the resource identifier (section 3.1), fetches it and validates the response (section
// 3.2/3.3: status, content type, JSON object, `resource` equal to the identifier).
//
//   node resource.mjs <resource identifier>
//
// Prints one line to stdout, {"url": <the URL it fetched>, "metadata": <the validated
// document>}; on a validation failure prints the error to stderr and exits 1.
import * as oauth from 'oauth4webapi';

const resource = new URL(process.argv[2]);
try {
  // The resource server runs over plain http on loopback in the tests.
  const response = await oauth.resourceDiscoveryRequest(resource, {
    [oauth.allowInsecureRequests]: true,
  });
  const metadata = await oauth.processResourceDiscoveryResponse(resource, response);
  process.stdout.write(JSON.stringify({ url: response.url, metadata }) + '\n');
} catch (error) {
  process.stderr.write(`${error.name} ${error.code ?? ''}: ${error.message}\n`);
  process.exit(1);
}

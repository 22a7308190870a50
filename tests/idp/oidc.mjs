// A real OpenID provider for the integration tests: panva's oidc-provider on
// http://127.0.0.1:$PORT, issuing JWT access tokens (ES256, signed with a key made at
// start) to one client_credentials client through resource indicators; with
// TOKEN_FORMAT=opaque, opaque ones instead, which its RFC 7662 endpoint
// (/token/introspection) answers for to the INTROSPECT_ID client.
//
//   PORT=8123 CLIENT_ID=orders-app CLIENT_SECRET=... node tests/idp/oidc.mjs
//
// The token's audience is `orders-api`, its scope what the client asked of
// "example_priv example_write", and it carries `roles: ["example_role"]` (a role claim).
// Prints "oidc-provider listening on <issuer>" once it accepts connections.
import { generateKeyPairSync } from 'node:crypto';
import Provider from 'oidc-provider';

const port = Number(process.env.PORT);
if (!Number.isInteger(port) || port <= 0) {
  console.error('oidc.mjs: set PORT to the loopback port to listen on');
  process.exit(2);
}
const issuer = `http://127.0.0.1:${port}`;
const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const signing = { ...privateKey.export({ format: 'jwk' }), kid: 'oidc-es256', alg: 'ES256', use: 'sig' };

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: process.env.CLIENT_ID ?? 'orders-app',
      client_secret: process.env.CLIENT_SECRET ?? 'orders-app-secret',
      grant_types: ['client_credentials'],
      redirect_uris: [],
      response_types: [],
      token_endpoint_auth_method: 'client_secret_basic',
      id_token_signed_response_alg: 'ES256',
    },
    {
      // ords-guard's own client at the introspection endpoint (SPEC §16).
      client_id: process.env.INTROSPECT_ID ?? 'ords-guard',
      client_secret: process.env.INTROSPECT_SECRET ?? 'ords-guard-introspect-secret',
      grant_types: [],
      redirect_uris: [],
      response_types: [],
      token_endpoint_auth_method: 'client_secret_basic',
      id_token_signed_response_alg: 'ES256',
    },
  ],
  jwks: { keys: [signing] },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => 'urn:orders-api',
      useGrantedResource: () => true,
      getResourceServerInfo: () => ({
        scope: 'example_priv example_write',
        audience: 'orders-api',
        accessTokenTTL: 300,
        accessTokenFormat: process.env.TOKEN_FORMAT === 'opaque' ? 'opaque' : 'jwt',
        jwt: { sign: { alg: 'ES256' } },
      }),
    },
  },
  extraTokenClaims: () => ({ roles: ['example_role'] }),
});

const server = provider.listen(port, '127.0.0.1', () => {
  console.log(`oidc-provider listening on ${issuer}`);
});
for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => server.close(() => process.exit(0)));
}

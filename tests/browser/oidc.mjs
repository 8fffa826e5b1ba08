// A real OpenID provider (the certified `oidc-provider` package) on 127.0.0.1, for the console's
// sign-in in the browser tests.
//
// Protocol with the test that runs it: the HTTP server binds port 0 first and one JSON line
// `{"issuer":"http://127.0.0.1:PORT"}` is printed on stdout; then ONE line is read from stdin,
// the console's redirect URI (the gateway's port is known only once it started, after it was
// configured with this issuer); then the provider starts serving. It ends when stdin closes
// (the test ended) or on SIGTERM.
//
// Sign-in is the package's development login form (any password); consent is granted without
// a page (the grant is made on first use), so a browser goes login form -> back to the console.
import http from 'node:http';
import readline from 'node:readline';
import { load } from './deps.mjs';

const { default: Provider } = await load('oidc-provider');

export const CLIENT_ID = 'tenantgate-console';
export const SCOPES = 'openid tenantgate';

/** The accounts (the login form's `login`) and the claims their ID tokens carry. */
export const ACCOUNTS = {
  alice: { tenant: 'acme', roles: ['tenant_admin'] },
  bob: { tenant: 'acme', roles: ['member'] },
  carol: { tenant: 'initech', roles: ['tenant_admin'] },
  root: { roles: ['platform_admin'] },
};

export function configuration(redirectUri) {
  return {
    clients: [{
      client_id: CLIENT_ID,
      token_endpoint_auth_method: 'none',
      grant_types: ['authorization_code'],
      response_types: ['code'],
      redirect_uris: [redirectUri],
      id_token_signed_response_alg: 'RS256',
    }],
    // `none` clients must use PKCE (the package's rule), S256 only (its default in 9.x).
    pkce: { required: () => true },
    scopes: ['openid', 'tenantgate'],
    claims: { openid: ['sub'], tenantgate: ['tenant', 'roles'] },
    // The claims go into the ID token itself (the console reads no userinfo).
    conformIdTokenClaims: false,
    features: { devInteractions: { enabled: true } },
    cookies: { keys: ['tenantgate-browser-tests-only'] },
    async findAccount(_ctx, id) {
      const claims = ACCOUNTS[id];
      if (!claims) return undefined;
      return { accountId: id, async claims() { return { sub: id, ...claims }; } };
    },
    // Consent without a page: every scope and claim asked for is granted the first time.
    async loadExistingGrant(ctx) {
      const { provider, session, client, params } = ctx.oidc;
      const grantId = ctx.oidc.result?.consent?.grantId || session.grantIdFor(client.clientId);
      if (grantId) {
        const existing = await provider.Grant.find(grantId);
        if (existing) return existing;
      }
      const grant = new provider.Grant({ clientId: client.clientId, accountId: session.accountId });
      grant.addOIDCScope(String(params.scope || 'openid'));
      grant.addOIDCClaims(['sub', 'tenant', 'roles']);
      await grant.save();
      return grant;
    },
    ttl: { Session: 3600, Grant: 3600, Interaction: 600, AuthorizationCode: 60, IdToken: 3600, AccessToken: 3600 },
    renderError(ctx, out, error) {
      ctx.type = 'html';
      ctx.body = `<h1>oidc error</h1><pre>${String(out.error)}: ${String(out.error_description || error)}</pre>`;
    },
  };
}

async function main() {
  let handler = (_req, res) => { res.statusCode = 503; res.end('not ready'); };
  const server = http.createServer((req, res) => handler(req, res));
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const issuer = `http://127.0.0.1:${server.address().port}`;
  process.stdout.write(`${JSON.stringify({ issuer })}\n`);

  const rl = readline.createInterface({ input: process.stdin });
  const lines = rl[Symbol.asyncIterator]();
  const first = await lines.next();
  const redirectUri = (first.value || '').trim();
  if (first.done || !/^https?:\/\//.test(redirectUri)) {
    process.stderr.write(`oidc.mjs: expected the redirect URI on stdin, got ${JSON.stringify(first.value)}\n`);
    process.exit(2);
  }
  const provider = new Provider(issuer, configuration(redirectUri));
  provider.on('server_error', (_ctx, err) => process.stderr.write(`oidc.mjs server_error: ${err.stack}\n`));
  handler = provider.callback();
  process.stderr.write(`oidc.mjs: serving ${issuer} for ${redirectUri}\n`);

  // stdin closed: the test that started us is gone.
  rl.on('close', () => { server.close(); process.exit(0); });
  process.on('SIGTERM', () => { server.close(); process.exit(0); });
}

if (import.meta.url === `file://${process.argv[1]}`) {
  await main();
}

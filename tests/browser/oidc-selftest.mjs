// Checks oidc.mjs on its own, without a gateway or a browser: discovery, then for every account
// a full authorization code flow with PKCE (S256) driven with fetch, the way the console runs
// it, and the ID token's claims. Prints `ok - ...` lines; exits non-zero on any failure.
//   TENANTGATE_BROWSER_NODE=<dir with node_modules> node tests/browser/oidc-selftest.mjs
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { ACCOUNTS, CLIENT_ID, SCOPES } from './oidc.mjs';

const REDIRECT = 'http://127.0.0.1:9/console/login/oidc/callback';
const b64url = (b) => Buffer.from(b).toString('base64url');
let failed = 0;
const check = (name, cond, why = '') => {
  if (cond) console.log(`ok - ${name}`);
  else { failed++; console.log(`not ok - ${name}${why ? `: ${why}` : ''}`); }
};

const child = spawn(process.execPath, [fileURLToPath(new URL('./oidc.mjs', import.meta.url))], {
  stdio: ['pipe', 'pipe', 'inherit'],
});
const first = await readline.createInterface({ input: child.stdout })[Symbol.asyncIterator]().next();
const { issuer } = JSON.parse(first.value);
child.stdin.write(`${REDIRECT}\n`);

async function until(f) {
  for (let i = 0; i < 100; i++) {
    const r = await f().catch(() => null);
    if (r && r.status !== 503) return r;
    await new Promise((res) => setTimeout(res, 50));
  }
  throw new Error('the provider did not start');
}

try {
  const disc = await (await until(() => fetch(`${issuer}/.well-known/openid-configuration`))).json();
  check('discovery names the issuer', disc.issuer === issuer, JSON.stringify(disc.issuer));
  check('discovery offers S256', (disc.code_challenge_methods_supported || []).includes('S256'));
  check('discovery offers RS256 ID tokens', (disc.id_token_signing_alg_values_supported || []).includes('RS256'));
  const jwks = await (await fetch(disc.jwks_uri)).json();
  check('JWKS has an RSA key', jwks.keys.some((k) => k.kty === 'RSA'));

  for (const [login, want] of Object.entries(ACCOUNTS)) {
    const jar = new Map();
    const go = async (url, init = {}) => {
      const headers = { ...(init.headers || {}), cookie: [...jar].map(([k, v]) => `${k}=${v}`).join('; ') };
      const r = await fetch(url, { ...init, headers, redirect: 'manual' });
      for (const c of r.headers.getSetCookie()) {
        const [kv] = c.split(';');
        const i = kv.indexOf('=');
        jar.set(kv.slice(0, i), kv.slice(i + 1));
      }
      return r;
    };
    const verifier = b64url(randomBytes(48));
    const challenge = b64url(createHash('sha256').update(verifier).digest());
    const nonce = b64url(randomBytes(16));
    const state = b64url(randomBytes(16));
    const auth = new URL(disc.authorization_endpoint);
    Object.entries({
      response_type: 'code', client_id: CLIENT_ID, redirect_uri: REDIRECT, scope: SCOPES,
      state, nonce, code_challenge: challenge, code_challenge_method: 'S256',
    }).forEach(([k, v]) => auth.searchParams.set(k, v));

    // Without PKCE the provider refuses (a public client).
    const noPkce = new URL(auth);
    noPkce.searchParams.delete('code_challenge');
    noPkce.searchParams.delete('code_challenge_method');
    const refused = await go(noPkce.href);
    const loc0 = refused.headers.get('location') || '';
    check(`${login}: no PKCE is refused`, loc0.startsWith(REDIRECT) && loc0.includes('error='), loc0);

    let r = await go(auth.href);
    let url = new URL(r.headers.get('location'), issuer).href;
    let hops = 0;
    let code;
    while (hops++ < 10) {
      if (url.startsWith(REDIRECT)) {
        const u = new URL(url);
        code = u.searchParams.get('code');
        check(`${login}: state comes back`, u.searchParams.get('state') === state);
        break;
      }
      r = await go(url);
      if (r.status === 200) {
        const html = await r.text();
        const action = html.match(/action="([^"]+)"/)?.[1];
        if (!action || !html.includes('name="login"')) throw new Error(`unexpected page at ${url}: ${html.slice(0, 300)}`);
        r = await go(new URL(action, issuer).href, {
          method: 'POST',
          headers: { 'content-type': 'application/x-www-form-urlencoded' },
          body: new URLSearchParams({ prompt: 'login', login, password: 'any' }).toString(),
        });
      }
      const loc = r.headers.get('location');
      if (!loc) throw new Error(`no redirect from ${url}: ${r.status} ${await r.text()}`);
      url = new URL(loc, issuer).href;
    }
    check(`${login}: code issued after the login form, no consent page`, !!code, url);
    if (!code) continue;
    const tok = await fetch(disc.token_endpoint, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({
        grant_type: 'authorization_code', code, redirect_uri: REDIRECT, client_id: CLIENT_ID, code_verifier: verifier,
      }).toString(),
    });
    const body = await tok.json();
    check(`${login}: token endpoint answers`, tok.status === 200 && !!body.id_token, JSON.stringify(body));
    if (!body.id_token) continue;
    const [h, p] = body.id_token.split('.').map((s, i) => (i < 2 ? JSON.parse(Buffer.from(s, 'base64url')) : null));
    check(`${login}: RS256`, h.alg === 'RS256', h.alg);
    check(`${login}: iss/aud/nonce/sub`, p.iss === issuer && p.aud === CLIENT_ID && p.nonce === nonce && p.sub === login,
      JSON.stringify(p));
    check(`${login}: tenant and roles claims`, p.tenant === want.tenant && JSON.stringify(p.roles) === JSON.stringify(want.roles),
      JSON.stringify(p));
    // The code is single use.
    const again = await fetch(disc.token_endpoint, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({
        grant_type: 'authorization_code', code, redirect_uri: REDIRECT, client_id: CLIENT_ID, code_verifier: verifier,
      }).toString(),
    });
    check(`${login}: code is single use`, again.status === 400, String(again.status));
  }
} catch (e) {
  failed++;
  console.log(`not ok - selftest: ${e.stack}`);
} finally {
  child.stdin.end();
}
process.exitCode = failed ? 1 : 0;

// An OpenID provider on loopback for gatehouse's issuance tests, built on `oidc-provider`.
//
// Usage: node server.js PORT KEYS_FILE
//   KEYS_FILE holds a private JWKS ({"keys": [...]}) written by the test, so the test can also sign
//   hostile tokens with the provider's real key (expired, nbf in the future, ...) and rotate keys
//   by restarting the provider with another file.
//
// Clients:
//   agent-ci   client credentials (client_secret_basic or _post), JWT access tokens (`at+jwt`) for the
//              resource indicators https://gatehouse.test and urn:gatehouse:other; claims groups=[agents]
//   human-cli  device flow (public client), ID tokens for account "alice" (email verified, groups)
// Consent is headless: GET /test/approve?user_code=CODE plays the browser (device form, login,
// consent) against this provider and answers 200 "approved".
import http from 'node:http';
import fs from 'node:fs';
import Provider from 'oidc-provider';

const port = Number(process.argv[2]);
const keys = JSON.parse(fs.readFileSync(process.argv[3], 'utf8'));
const issuer = `http://127.0.0.1:${port}`;
const alg = keys.keys[0].alg || 'EdDSA';
const RESOURCES = new Set(['https://gatehouse.test', 'urn:gatehouse:other']);

const provider = new Provider(issuer, {
  jwks: keys,
  clients: [
    {
      client_id: 'agent-ci',
      client_secret: 'agent-ci-secret-0123456789',
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_basic',
      id_token_signed_response_alg: alg,
    },
    {
      client_id: 'human-cli',
      grant_types: ['urn:ietf:params:oauth:grant-type:device_code'],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'none',
      id_token_signed_response_alg: alg,
    },
  ],
  enabledJWA: { idTokenSigningAlgValues: [alg] },
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    groups: ['groups'],
  },
  scopes: ['openid', 'email', 'groups', 'ssh'],
  conformIdTokenClaims: false,
  async findAccount(ctx, id) {
    return {
      accountId: id,
      async claims() {
        return { sub: id, email: `${id}@example.com`, email_verified: true, groups: ['humans'] };
      },
    };
  },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    deviceFlow: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => undefined,
      useGrantedResource: () => true,
      async getResourceServerInfo(ctx, resource) {
        if (!RESOURCES.has(resource)) {
          throw new Provider.errors.InvalidTarget();
        }
        return {
          scope: 'ssh',
          audience: resource,
          accessTokenTTL: 300,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg } },
        };
      },
    },
  },
  async extraTokenClaims(ctx, token) {
    if (token.kind === 'ClientCredentials') {
      return { groups: ['agents'] };
    }
    return undefined;
  },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  ttl: { DeviceCode: 300, IdToken: 300, AccessToken: 300, ClientCredentials: 300 },
});
provider.proxy = false;

// The interaction (login + consent) of the device flow, finished without a page: account "alice".
async function interaction(req, res) {
  const details = await provider.interactionDetails(req, res);
  if (details.prompt.name === 'login') {
    await provider.interactionFinished(req, res, { login: { accountId: 'alice' } },
      { mergeWithLastSubmission: false });
    return;
  }
  const grant = details.grantId
    ? await provider.Grant.find(details.grantId)
    : new provider.Grant({ accountId: details.session.accountId, clientId: details.params.client_id });
  if (details.prompt.details.missingOIDCScope) {
    grant.addOIDCScope(details.prompt.details.missingOIDCScope.join(' '));
  }
  if (details.prompt.details.missingOIDCClaims) {
    grant.addOIDCClaims(details.prompt.details.missingOIDCClaims);
  }
  const grantId = await grant.save();
  await provider.interactionFinished(req, res, { consent: { grantId } },
    { mergeWithLastSubmission: true });
}

// Plays the user's browser: confirm the user code, then follow redirects through the interaction.
async function approve(userCode) {
  const jar = new Map();
  const remember = (r) => {
    for (const c of r.headers.getSetCookie()) {
      const [pair] = c.split(';');
      const i = pair.indexOf('=');
      jar.set(pair.slice(0, i), pair.slice(i + 1));
    }
  };
  const cookie = () => [...jar].map(([k, v]) => `${k}=${v}`).join('; ');
  const go = async (url, body) => {
    const r = await fetch(new URL(url, issuer), {
      method: body ? 'POST' : 'GET',
      redirect: 'manual',
      headers: { cookie: cookie(), ...(body ? { 'content-type': 'application/x-www-form-urlencoded' } : {}) },
      body: body ? new URLSearchParams(body).toString() : undefined,
    });
    remember(r);
    return r;
  };
  const xsrf = (html) => /name="xsrf" value="([^"]+)"/.exec(html)?.[1];
  let r = await go(`/device?user_code=${encodeURIComponent(userCode)}`);
  let html = await r.text();
  r = await go('/device', { xsrf: xsrf(html), user_code: userCode });
  html = await r.text();
  r = await go('/device', { xsrf: xsrf(html), user_code: userCode, confirm: 'yes' });
  for (let hops = 0; hops < 10 && r.status >= 300 && r.status < 400; hops += 1) {
    r = await go(r.headers.get('location'));
  }
  const text = await r.text();
  if (!/success|Sign-in Success/i.test(text)) {
    throw new Error(`device approval did not finish: ${r.status} ${text.slice(0, 300)}`);
  }
}

const callback = provider.callback();
http.createServer(async (req, res) => {
  try {
    if (req.url.startsWith('/interaction/')) {
      await interaction(req, res);
    } else if (req.url.startsWith('/test/approve')) {
      const code = new URL(req.url, issuer).searchParams.get('user_code');
      await approve(code);
      res.writeHead(200, { 'content-type': 'text/plain' }).end('approved\n');
    } else {
      callback(req, res);
    }
  } catch (err) {
    res.writeHead(500, { 'content-type': 'text/plain' }).end(`${err.stack}\n`);
  }
}).listen(port, '127.0.0.1', () => {
  console.log(`idp listening on ${issuer}`);
});

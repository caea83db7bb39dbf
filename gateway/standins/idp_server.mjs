// LOCAL STAND-IN identity provider: the npm package oauth2-mock-server (a real
// OIDC server nobody here wrote) plus a small user directory of ours, so that
// tests and `make run` can sign people in, change their groups, and disable or
// remove them (their refresh_token grant is then refused, as a real IdP does).
//
// Usage: node idp_server.mjs <oauth2-mock-server module dir> <port|0> <users JSON>
// Prints one JSON line {"issuer": ..., "port": ...} on stdout once listening.
//
// Control endpoint (loopback only, no auth: this is a test double's back door):
//   GET    /_control/users                 -> the directory
//   PUT    /_control/users/<email>         body {sub?, email_verified?, groups?, disabled?, claims?}
//   DELETE /_control/users/<email>         removes the user (refresh grants then fail)
//   PUT    /_control/login_as              body {email}: who the next /authorize signs in
//   PUT    /_control/fail                  body {status}: every OIDC endpoint answers that status
//                                          (e.g. 500, an IdP outage); {status: 0} heals it
// `/authorize?login_hint=<email>` also picks the user for that one sign-in.

import http from "node:http";
import path from "node:path";
import { pathToFileURL } from "node:url";

const [moduleDir, portArg, usersArg] = process.argv.slice(2);
const { OAuth2Issuer, OAuth2Service } = await import(
  pathToFileURL(path.join(moduleDir, "node_modules", "oauth2-mock-server", "dist", "index.mjs")).href
);

const users = new Map(); // email -> {sub, email, email_verified, groups, disabled, claims}
let loginAs = null;
let failStatus = 0; // non-zero: the IdP is "down" and answers every OIDC request with it
for (const user of JSON.parse(usersArg || "[]")) upsert(user.email, user);

const codes = new Map(); // authorization code -> email
const refreshTokens = new Map(); // refresh token -> email

function upsert(email, fields) {
  const before = users.get(email) || { sub: "sub-" + email, email, email_verified: true, groups: [], disabled: false, claims: {} };
  const user = { ...before, ...fields, email };
  users.set(email, user);
  if (loginAs === null) loginAs = email;
  return user;
}

// The user a token request speaks for (undefined: unknown, removed or disabled).
function userFor(req) {
  const body = req.body || {};
  let email;
  if (body.grant_type === "authorization_code") email = codes.get(body.code);
  else if (body.grant_type === "refresh_token") email = refreshTokens.get(body.refresh_token);
  const user = email && users.get(email);
  return user && !user.disabled ? user : undefined;
}

const issuer = new OAuth2Issuer();
await issuer.keys.generate("RS256");
const service = new OAuth2Service(issuer);

service.on("beforeAuthorizeRedirect", (redirect, req) => {
  const code = redirect.url.searchParams.get("code");
  const hint = new URL(req.url, "http://x").searchParams.get("login_hint");
  const email = hint && users.has(hint) ? hint : loginAs;
  if (code && email) codes.set(code, email);
});

service.on("beforeTokenSigning", (token, req) => {
  const user = userFor(req);
  if (!user) return;
  Object.assign(token.payload, {
    sub: user.sub,
    email: user.email,
    email_verified: user.email_verified,
    groups: user.groups,
    ...user.claims,
  });
});

service.on("beforeResponse", (response, req) => {
  const body = req.body || {};
  if (body.grant_type !== "authorization_code" && body.grant_type !== "refresh_token") return;
  const user = userFor(req);
  if (!user) {
    response.statusCode = 400;
    response.body = { error: "invalid_grant", error_description: "unknown, disabled or removed user" };
    return;
  }
  if (body.grant_type === "authorization_code") codes.delete(body.code);
  else refreshTokens.delete(body.refresh_token); // rotated, like most IdPs
  if (response.body.refresh_token) refreshTokens.set(response.body.refresh_token, user.email);
});

service.on("beforeUserinfo", (response, req) => {
  const auth = req.headers.authorization || "";
  let sub;
  try {
    sub = JSON.parse(Buffer.from(auth.split(" ")[1].split(".")[1], "base64url").toString()).sub;
  } catch {
    sub = undefined;
  }
  const user = [...users.values()].find((u) => u.sub === sub);
  if (!user || user.disabled) {
    response.statusCode = 401;
    response.body = { error: "invalid_token" };
    return;
  }
  response.body = { sub: user.sub, email: user.email, email_verified: user.email_verified, groups: user.groups, ...user.claims };
});

function control(req, res) {
  let raw = "";
  req.on("data", (chunk) => (raw += chunk));
  req.on("end", () => {
    const send = (status, payload) => {
      res.writeHead(status, { "content-type": "application/json" });
      res.end(JSON.stringify(payload));
    };
    let body = {};
    try {
      body = raw ? JSON.parse(raw) : {};
    } catch {
      return send(400, { error: "invalid JSON" });
    }
    const parts = req.url.split("?")[0].split("/").filter(Boolean).map(decodeURIComponent);
    if (parts[1] === "users" && parts.length === 2 && req.method === "GET") return send(200, [...users.values()]);
    if (parts[1] === "users" && parts.length === 3 && req.method === "PUT") return send(200, upsert(parts[2], body));
    if (parts[1] === "users" && parts.length === 3 && req.method === "DELETE") {
      const existed = users.delete(parts[2]);
      if (loginAs === parts[2]) loginAs = users.keys().next().value ?? null;
      return send(existed ? 200 : 404, { removed: existed });
    }
    if (parts[1] === "fail" && req.method === "PUT") {
      failStatus = Number(body.status) || 0;
      return send(200, { fail: failStatus });
    }
    if (parts[1] === "login_as" && req.method === "PUT" && users.has(body.email)) {
      loginAs = body.email;
      return send(200, { login_as: loginAs });
    }
    return send(404, { error: "no such control route" });
  });
}

const server = http.createServer((req, res) => {
  if (req.url.startsWith("/_control/")) return control(req, res);
  if (failStatus) {
    res.writeHead(failStatus, { "content-type": "text/html" });
    return res.end("<html><body>upstream connect error</body></html>");
  }
  return service.requestHandler(req, res);
});
server.listen(Number(portArg || 0), "127.0.0.1", () => {
  const { port } = server.address();
  // Set before the first request: the issuer must match the gateway's config exactly.
  issuer.url = `http://127.0.0.1:${port}`;
  process.stdout.write(JSON.stringify({ issuer: issuer.url, port }) + "\n");
});
const shutdown = () => server.close(() => process.exit(0));
process.on("SIGTERM", shutdown);
process.on("SIGINT", shutdown);

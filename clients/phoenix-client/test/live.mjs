// Run by tests/integration/auth/test_auth_ts_client.py against a real service: each step prints
// one JSON line the test asserts on. Args: publicUrl adminUrl adminToken email password userId.
import { createPhoenixAdminClient, createPhoenixClient, PhoenixError } from "../dist/src/index.js";
import { createSessionGuard } from "../dist/src/session-guard.js";

const [publicUrl, adminUrl, adminToken, email, password, userId] = process.argv.slice(2);
const client = createPhoenixClient({ baseUrl: publicUrl, timeoutMs: 5000 });
const admin = createPhoenixAdminClient({ baseUrl: adminUrl, token: adminToken });
const out = (step, value) => console.log(JSON.stringify({ step, ...value }));
const failure = (err) =>
  err instanceof PhoenixError ? { error: err.code, status: err.status, retryAfter: err.retryAfter ?? null } : { crash: String(err) };

const login = await client.login(email, password, { clientAddress: "198.51.100.9" });
out("login", { user: login.user.email, token: login.session.sessionId.length > 20 });
out("session", { user: (await client.session(login.session.sessionId)).user.id });
await client.logout(login.session.sessionId);
try {
  await client.session(login.session.sessionId);
  out("after-logout", { valid: true });
} catch (err) {
  out("after-logout", failure(err));
}
const second = await client.login(email, password);
// What the guard adds to a page request: a cached answer, and a real check (cacheMs 0).
const pct = (xs, p) => xs.sort((a, b) => a - b)[Math.min(xs.length - 1, Math.ceil((p / 100) * xs.length) - 1)];
for (const [name, cacheMs] of [["cached", 5000], ["uncached", 0]]) {
  let requests = 0;
  const counted = { ...client, session: (token) => (requests++, client.session(token)) };
  const guard = createSessionGuard({ client: counted, cacheMs });
  const times = [];
  for (let i = 0; i < 500; i++) {
    const t = performance.now();
    if (!(await guard.check(second.session.sessionId))) throw new Error("valid session refused");
    times.push(performance.now() - t);
  }
  out(`guard-${name}`, { checks: times.length, requests, p50: pct(times, 50), p99: pct(times, 99) });
}
out("revoke", { revoked: await admin.revokeUserSessions(userId) });
try {
  await client.session(second.session.sessionId);
  out("after-revoke", { valid: true });
} catch (err) {
  out("after-revoke", failure(err));
}
try {
  await createPhoenixAdminClient({ baseUrl: adminUrl, token: "wrong-token-".repeat(3) }).revokeUserSessions(userId);
} catch (err) {
  out("bad-admin-token", failure(err));
}
const wrong = [];
for (let i = 0; i < 6; i++) {
  try {
    await client.login(email, "not-the-password");
  } catch (err) {
    wrong.push(failure(err));
  }
}
out("wrong", { answers: wrong });

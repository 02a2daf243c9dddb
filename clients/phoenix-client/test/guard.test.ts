import assert from "node:assert/strict";
import { test } from "node:test";

import { PhoenixError, type PhoenixClient, type SessionResponse } from "../src/index.js";
import { phoenixAuthorize } from "../src/authorize.js";
import { createSessionGuard } from "../src/session-guard.js";

const SESSION: SessionResponse = {
  user: { id: "u1", email: "a@example.com", name: null, role: "user", teamName: null },
  session: { expiresAt: Date.now() + 3_600_000 },
};

function fakeClient(valid: Set<string>, calls: string[] = []): PhoenixClient {
  return {
    async login(email, password) {
      calls.push(`login ${email}`);
      if (password === "throttle") throw new PhoenixError(429, "THROTTLED", "wait", 42);
      if (password === "down") throw new PhoenixError(503, "DATABASE_UNAVAILABLE", "down", 2);
      if (password !== "right") throw new PhoenixError(401, "INVALID_CREDENTIALS", "no");
      return {
        user: SESSION.user,
        session: { sessionId: "tok", expiresAt: 5, securityRisk: 0 },
        performance: { totalTime: 1, databaseTime: 1, cacheHits: 0 },
      };
    },
    async session(token) {
      calls.push(`session ${token}`);
      if (!valid.has(token)) throw new PhoenixError(401, "INVALID_SESSION", "no");
      return SESSION;
    },
    async logout() {},
  };
}

test("the guard asks Phoenix once per token within cacheMs, then again", async () => {
  let clock = 1_000;
  const calls: string[] = [];
  const guard = createSessionGuard({ client: fakeClient(new Set(["t"]), calls), cacheMs: 5000, now: () => clock });
  assert.deepEqual(await guard.check("t"), SESSION);
  assert.deepEqual(await guard.check("t"), SESSION);
  assert.equal(calls.length, 1);
  clock += 5001;
  await guard.check("t");
  assert.equal(calls.length, 2);
});

test("a revoked session is refused once its cached answer expires", async () => {
  let clock = 0;
  const valid = new Set(["t"]);
  const guard = createSessionGuard({ client: fakeClient(valid), cacheMs: 1000, now: () => clock });
  assert.ok(await guard.check("t"));
  valid.delete("t");
  clock += 1001;
  assert.equal(await guard.check("t"), null);
});

test("the cache is bounded", async () => {
  const guard = createSessionGuard({ client: fakeClient(new Set()), maxEntries: 3 });
  for (const t of ["a", "b", "c", "d", "e"]) await guard.check(t);
  assert.equal(guard.size, 3);
});

test("protect redirects pages to the login form and answers 401 to API calls", async () => {
  const guard = createSessionGuard({ client: fakeClient(new Set(["ok"])) });
  assert.equal(await guard.protect(new Request("http://app/dashboard"), "ok"), undefined);
  const page = await guard.protect(new Request("http://app/dashboard?tab=2"), "bad");
  assert.equal(page?.status, 307);
  assert.equal(page?.headers.get("location"), "http://app/login?callbackUrl=%2Fdashboard%3Ftab%3D2");
  const api = await guard.protect(new Request("http://app/api/orders"), undefined);
  assert.equal(api?.status, 401);
  assert.equal((await api?.json()).error, "INVALID_SESSION");
});

test("Phoenix being down is an error for the caller, not a logout", async () => {
  const client = fakeClient(new Set());
  client.session = async () => {
    throw new PhoenixError(503, "DATABASE_UNAVAILABLE", "down", 1);
  };
  await assert.rejects(createSessionGuard({ client }).check("t"), PhoenixError);
});

test("authorize maps Phoenix answers to Auth.js codes; 429 is never a wrong password", async () => {
  const calls: string[] = [];
  const options = { client: fakeClient(new Set(), calls), clientAddress: (r: Request) => r.headers.get("x-real-ip") ?? undefined };
  const request = new Request("http://app/api/auth/callback/phoenix", { headers: { "x-real-ip": "203.0.113.5" } });
  const user = await phoenixAuthorize(options, { email: "a@example.com", password: "right" }, request);
  assert.equal(user.phoenixSession, "tok");
  const code = async (password: string) =>
    phoenixAuthorize(options, { email: "a@example.com", password }, request).then(
      () => "ok",
      (err: { code?: string }) => err.code,
    );
  assert.equal(await code("wrong"), "invalid_credentials");
  assert.equal(await code("throttle"), "throttled_42");
  assert.equal(await code("down"), "unavailable_2");
  assert.equal(await code(""), "invalid_credentials");
});

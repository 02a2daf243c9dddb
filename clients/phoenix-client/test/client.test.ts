import assert from "node:assert/strict";
import { test } from "node:test";

import { createPhoenixAdminClient, createPhoenixClient, ERROR_STATUS, PhoenixError } from "../src/index.js";

type Seen = { url: string; init: RequestInit };

function fakeFetch(answer: (seen: Seen) => Response | Promise<Response>, seen: Seen[] = []): typeof fetch {
  return (async (input: string | URL | Request, init?: RequestInit) => {
    const s = { url: String(input), init: init ?? {} };
    seen.push(s);
    return answer(s);
  }) as typeof fetch;
}

const json = (status: number, body: unknown, headers: Record<string, string> = {}) =>
  new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json", ...headers } });

const LOGIN = {
  user: { id: "u1", email: "a@example.com", name: null, role: "user", teamName: null },
  session: { sessionId: "tok", expiresAt: 1, securityRisk: 0 },
  performance: { totalTime: 1, databaseTime: 1, cacheHits: 0 },
};

test("login posts JSON and forwards the end user's address", async () => {
  const seen: Seen[] = [];
  const client = createPhoenixClient({ baseUrl: "http://phoenix:3007/", fetch: fakeFetch(() => json(200, LOGIN), seen) });
  const out = await client.login("a@example.com", "pw", { clientAddress: "203.0.113.7" });
  assert.equal(out.session.sessionId, "tok");
  assert.equal(seen[0]?.url, "http://phoenix:3007/api/auth/phoenix");
  assert.equal(seen[0]?.init.method, "POST");
  assert.deepEqual(JSON.parse(String(seen[0]?.init.body)), { email: "a@example.com", password: "pw" });
  assert.equal((seen[0]?.init.headers as Record<string, string>)["X-Forwarded-For"], "203.0.113.7");
});

test("every API error code becomes a PhoenixError with status, code and message", async () => {
  for (const [code, status] of Object.entries(ERROR_STATUS)) {
    const client = createPhoenixClient({ baseUrl: "http://p", fetch: fakeFetch(() => json(status, { error: code, message: `m-${code}` })) });
    await assert.rejects(client.session("t"), (err: unknown) => {
      assert.ok(err instanceof PhoenixError);
      assert.equal(err.code, code);
      assert.equal(err.status, status);
      assert.equal(err.message, `m-${code}`);
      return true;
    });
  }
});

test("429 THROTTLED carries Retry-After in seconds and is retryable, not a wrong password", async () => {
  const client = createPhoenixClient({
    baseUrl: "http://p",
    fetch: fakeFetch(() => json(429, { error: "THROTTLED", message: "wait" }, { "Retry-After": "17" })),
  });
  await assert.rejects(client.login("a@example.com", "x"), (err: unknown) => {
    assert.ok(err instanceof PhoenixError);
    assert.equal(err.code, "THROTTLED");
    assert.equal(err.retryAfter, 17);
    assert.equal(err.retryable, true);
    return true;
  });
});

test("a slow service gives TIMEOUT within the configured time", async () => {
  const slow = fakeFetch(
    ({ init }) =>
      new Promise<Response>((_, reject) => {
        init.signal?.addEventListener("abort", () => reject(init.signal?.reason));
      }),
  );
  const client = createPhoenixClient({ baseUrl: "http://p", timeoutMs: 50, fetch: slow });
  // AbortSignal.timeout's timer does not hold the event loop (a real request's socket does).
  const keepAlive = setTimeout(() => undefined, 5000);
  const started = Date.now();
  try {
    await assert.rejects(client.session("t"), (err: unknown) => err instanceof PhoenixError && err.code === "TIMEOUT");
  } finally {
    clearTimeout(keepAlive);
  }
  assert.ok(Date.now() - started < 1000);
});

test("an unreadable answer is UNEXPECTED_RESPONSE, an unreachable service NETWORK_ERROR", async () => {
  const html = createPhoenixClient({ baseUrl: "http://p", fetch: fakeFetch(() => new Response("<html>", { status: 502 })) });
  await assert.rejects(html.session("t"), (err: unknown) => err instanceof PhoenixError && err.code === "UNEXPECTED_RESPONSE" && err.status === 502);
  const down = createPhoenixClient({
    baseUrl: "http://p",
    fetch: fakeFetch(() => {
      throw new TypeError("fetch failed");
    }),
  });
  await assert.rejects(down.session("t"), (err: unknown) => err instanceof PhoenixError && err.code === "NETWORK_ERROR");
});

test("the admin client sends its token to the admin route and returns the count", async () => {
  const seen: Seen[] = [];
  const admin = createPhoenixAdminClient({ baseUrl: "http://phoenix-admin:3008", token: "k".repeat(32), fetch: fakeFetch(() => json(200, { revoked: 3 }), seen) });
  assert.equal(await admin.revokeUserSessions("u/1"), 3);
  assert.equal(seen[0]?.url, "http://phoenix-admin:3008/api/auth/admin/users/u%2F1/revoke-sessions");
  assert.equal((seen[0]?.init.headers as Record<string, string>)["Authorization"], `Bearer ${"k".repeat(32)}`);
});

/**
 * Per-request session checks for Next.js middleware (`proxy.ts`) or any fetch-style handler.
 *
 * With Auth.js's JWT sessions nothing asks Phoenix again after login, so a session revoked in
 * Phoenix (logout elsewhere, admin revoke, password change) would stay valid in the app. The guard
 * asks Phoenix (`GET /api/auth/session`) and remembers each answer for a short, bounded time, so
 * most page loads cost a map lookup and a revocation is seen within `cacheMs`. Web-standard
 * Request/Response only: it runs on the Edge and Node runtimes.
 */
import { PhoenixError, type PhoenixClient, type SessionResponse } from "./index.js";

export interface SessionGuardOptions {
  client: PhoenixClient;
  /** How long an answer is reused; default 5000 ms, at most 60000 (a revocation waits this long). */
  cacheMs?: number;
  /** Entries kept (oldest dropped first); default 10000. */
  maxEntries?: number;
  /** Where a page request without a valid session is sent; default "/login". */
  loginPath?: string;
  /** Clock, for tests. */
  now?: () => number;
}

export interface SessionGuard {
  /** The session's user and expiry, or null when Phoenix says it is not valid. Other failures
   * (Phoenix unreachable, 503) throw a PhoenixError: the caller decides whether to fail open. */
  check(token: string | undefined | null): Promise<SessionResponse | null>;
  /** undefined when the request may go on; else a redirect to the login page (pages) or a 401 JSON
   * answer (requests under /api/ or asking for JSON). */
  protect(request: Request, token: string | undefined | null): Promise<Response | undefined>;
  /** Forget a token at once (call it on this app's logout). */
  forget(token: string): void;
  readonly size: number;
}

export function createSessionGuard(options: SessionGuardOptions): SessionGuard {
  const cacheMs = Math.min(Math.max(options.cacheMs ?? 5000, 0), 60_000);
  const maxEntries = Math.max(options.maxEntries ?? 10_000, 1);
  const now = options.now ?? Date.now;
  const loginPath = options.loginPath ?? "/login";
  const cache = new Map<string, { until: number; value: SessionResponse | null }>();

  async function check(token: string | undefined | null): Promise<SessionResponse | null> {
    if (!token) return null;
    const hit = cache.get(token);
    if (hit && hit.until > now()) return hit.value;
    let value: SessionResponse | null;
    try {
      value = await options.client.session(token);
    } catch (err) {
      if (err instanceof PhoenixError && (err.code === "INVALID_SESSION" || err.code === "SESSION_REQUIRED")) value = null;
      else throw err;
    }
    const until = value === null ? now() + cacheMs : Math.min(now() + cacheMs, value.session.expiresAt);
    cache.delete(token);
    cache.set(token, { until, value });
    while (cache.size > maxEntries) {
      const oldest = cache.keys().next().value;
      if (oldest === undefined) break;
      cache.delete(oldest);
    }
    return value;
  }

  return {
    check,
    async protect(request, token) {
      if (await check(token)) return undefined;
      const url = new URL(request.url);
      const wantsJson = url.pathname.startsWith("/api/") || (request.headers.get("accept") ?? "").includes("application/json");
      if (wantsJson) {
        return new Response(JSON.stringify({ error: "INVALID_SESSION", message: "Sign in again." }), {
          status: 401,
          headers: { "Content-Type": "application/json" },
        });
      }
      const login = new URL(loginPath, url);
      login.searchParams.set("callbackUrl", url.pathname + url.search);
      return Response.redirect(login, 307);
    },
    forget(token) {
      cache.delete(token);
    },
    get size() {
      return cache.size;
    },
  };
}

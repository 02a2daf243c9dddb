import { createPhoenixClient } from "@phoenix-auth/client";
import { createSessionGuard } from "@phoenix-auth/client/session-guard";

// PHOENIX_URL: the auth Service (e.g. http://phoenix.auth.svc:3007); read at request time.
export const phoenix = createPhoenixClient({ baseUrl: process.env.PHOENIX_URL ?? "http://127.0.0.1:3007", timeoutMs: 5000 });
export const guard = createSessionGuard({ client: phoenix, cacheMs: Number(process.env.PHOENIX_SESSION_CACHE_MS ?? 5000) });

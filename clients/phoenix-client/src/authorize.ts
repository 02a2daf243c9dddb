/**
 * The Phoenix login behind the Auth.js provider (`next-auth.ts`), without importing Auth.js, so it
 * runs and is tested anywhere. Failures are `SignInRefused` with the code the sign-in page gets.
 */
import { PhoenixError, type PhoenixClient } from "./index.js";

export class SignInRefused extends Error {
  readonly code: string;
  constructor(code: string) {
    super(code);
    this.name = "SignInRefused";
    this.code = code;
  }
}

export interface PhoenixCredentialsOptions {
  client: PhoenixClient;
  /** The end user's address from the incoming request (e.g. the first X-Forwarded-For entry your
   * ingress sets); forwarded to Phoenix so throttling counts the user, not this app. */
  clientAddress?: (request: Request) => string | undefined;
}

export interface PhoenixUser {
  id: string;
  email: string;
  name: string | null;
  role: string;
  teamName: string | null;
  phoenixSession: string;
  phoenixSessionExpiresAt: number;
}

/** What `authorize()` does, separate from Auth.js so it can be tested alone. */
export async function phoenixAuthorize(
  options: PhoenixCredentialsOptions,
  credentials: Partial<Record<string, unknown>>,
  request: Request,
): Promise<PhoenixUser> {
  const email = typeof credentials["email"] === "string" ? credentials["email"] : "";
  const password = typeof credentials["password"] === "string" ? credentials["password"] : "";
  if (!email || !password) throw new SignInRefused("invalid_credentials");
  const clientAddress = options.clientAddress?.(request);
  try {
    const out = await options.client.login(email, password, clientAddress ? { clientAddress } : {});
    return { ...out.user, phoenixSession: out.session.sessionId, phoenixSessionExpiresAt: out.session.expiresAt };
  } catch (err) {
    if (!(err instanceof PhoenixError)) throw err;
    if (err.code === "THROTTLED") throw new SignInRefused(`throttled_${err.retryAfter ?? 60}`);
    if (err.retryable) throw new SignInRefused(`unavailable_${err.retryAfter ?? 5}`);
    throw new SignInRefused("invalid_credentials");
  }
}


/**
 * An Auth.js (NextAuth v5) Credentials provider whose `authorize()` is a Phoenix login.
 *
 * It replaces the seed's hand-written `authorize()` (user lookup, hash check, a fixed 100 ms sleep):
 * Phoenix does the lookup, the constant-time verify and the throttling. Errors reach the sign-in
 * page as Auth.js's `?error=CredentialsSignin&code=...`: `invalid_credentials`, or `throttled_<s>`
 * with the seconds to wait (a 429 is never shown as a wrong password), or `unavailable_<s>`.
 * The Phoenix session token is returned on the user as `phoenixSession`: keep it in the JWT
 * (callbacks below) and check it per request with `createSessionGuard`.
 */
import { CredentialsSignin } from "next-auth";
import Credentials from "next-auth/providers/credentials";

import { phoenixAuthorize, SignInRefused, type PhoenixCredentialsOptions } from "./authorize.js";

export { phoenixAuthorize, type PhoenixCredentialsOptions, type PhoenixUser } from "./authorize.js";

export class PhoenixSignInError extends CredentialsSignin {
  constructor(code: string) {
    super();
    this.code = code;
  }
}

/** `providers: [PhoenixCredentials({ client })]` in your `auth.ts`. */
export function PhoenixCredentials(options: PhoenixCredentialsOptions) {
  return Credentials({
    id: "phoenix",
    name: "Phoenix",
    credentials: { email: { label: "Email", type: "email" }, password: { label: "Password", type: "password" } },
    authorize: async (credentials, request) => {
      try {
        return await phoenixAuthorize(options, credentials, request);
      } catch (err) {
        if (err instanceof SignInRefused) throw new PhoenixSignInError(err.code);
        throw err;
      }
    },
  });
}

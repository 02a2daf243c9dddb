import NextAuth from "next-auth";
import { PhoenixCredentials } from "@phoenix-auth/client/next-auth";

import { phoenix } from "./phoenix";

declare module "next-auth" {
  interface Session {
    phoenixSession?: string;
  }
}

export const { handlers, auth, signIn, signOut } = NextAuth({
  trustHost: true,
  pages: { signIn: "/login" },
  providers: [
    PhoenixCredentials({
      client: phoenix,
      clientAddress: (request) => request.headers.get("x-forwarded-for")?.split(",")[0]?.trim() || undefined,
    }),
  ],
  callbacks: {
    jwt({ token, user }) {
      if (user && "phoenixSession" in user) token.phoenixSession = user.phoenixSession as string;
      return token;
    },
    session({ session, token }) {
      session.phoenixSession = token.phoenixSession as string | undefined;
      return session;
    },
  },
  logger: { error: (error) => { if (error.name !== "CredentialsSignin") console.error(error); } },
});

import { redirect } from "next/navigation";

import { auth, signOut } from "@/auth";
import { guard, phoenix } from "@/phoenix";

async function logout() {
  "use server";
  const session = await auth();
  if (session?.phoenixSession) {
    guard.forget(session.phoenixSession);
    await phoenix.logout(session.phoenixSession).catch(() => undefined);
  }
  await signOut({ redirectTo: "/login" });
}

export default async function Protected() {
  const session = await auth();
  const current = await guard.check(session?.phoenixSession);
  if (!current) redirect("/login");
  return (
    <main>
      <h1>Protected</h1>
      <p data-testid="user">Signed in as {current.user.email}</p>
      <form action={logout}>
        <button type="submit" data-testid="logout">Sign out</button>
      </form>
    </main>
  );
}

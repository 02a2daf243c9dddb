import { AuthError } from "next-auth";
import { redirect } from "next/navigation";

import { signIn } from "@/auth";

function message(code: string | undefined): string | null {
  if (!code) return null;
  const [kind, seconds] = code.split(/_(?=\d+$)/);
  if (kind === "throttled") return `Too many attempts: try again in ${seconds} s.`;
  if (kind === "unavailable") return `Sign-in is unavailable: try again in ${seconds} s.`;
  return "Wrong email or password.";
}

async function login(formData: FormData) {
  "use server";
  try {
    await signIn("phoenix", {
      email: formData.get("email"),
      password: formData.get("password"),
      redirectTo: "/protected",
    });
  } catch (error) {
    if (error instanceof AuthError) {
      const code = "code" in error && typeof error.code === "string" ? error.code : "invalid_credentials";
      redirect(`/login?code=${encodeURIComponent(code)}`);
    }
    throw error;
  }
}

export default async function LoginPage({ searchParams }: { searchParams: Promise<{ code?: string }> }) {
  const error = message((await searchParams).code);
  return (
    <main>
      <h1>Sign in</h1>
      {error && (
        <p data-testid="login-error" style={{ color: "crimson" }}>
          {error}
        </p>
      )}
      <form action={login}>
        <p><input name="email" type="email" placeholder="Email" required data-testid="email" /></p>
        <p><input name="password" type="password" placeholder="Password" required data-testid="password" /></p>
        <button type="submit" data-testid="submit">Sign in</button>
      </form>
    </main>
  );
}

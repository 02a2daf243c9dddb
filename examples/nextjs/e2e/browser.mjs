// The example app in headless Chromium (Debian's), against the real Phoenix service. Run by
// tests/e2e/test_browser_nextjs.py: args appUrl adminUrl adminToken email password userId shotsDir.
// Prints one JSON line per step; screenshots of the main screens go to shotsDir.
import { chromium } from "playwright-core";

const [appUrl, adminUrl, adminToken, email, password, userId, shots] = process.argv.slice(2);
const out = (step, value) => console.log(JSON.stringify({ step, ...value }));
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--no-sandbox", "--log-level=3"],
});
try {
  const page = await browser.newPage();
  const signIn = async (pw) => {
    await page.goto(`${appUrl}/login`);
    await page.getByTestId("email").fill(email);
    await page.getByTestId("password").fill(pw);
    await Promise.all([page.waitForLoadState("networkidle"), page.getByTestId("submit").click()]);
    await page.waitForURL(/\/(login\?code=|protected)/, { timeout: 15000 });
  };
  const text = async (id) => ((await page.getByTestId(id).count()) ? (await page.getByTestId(id).textContent()) : null);

  await page.goto(`${appUrl}/protected`);
  out("anonymous", { path: new URL(page.url()).pathname });
  await page.screenshot({ path: `${shots}/1-login.png` });

  await signIn("not-the-password");
  out("wrong-password", { path: new URL(page.url()).pathname, error: await text("login-error") });
  await page.screenshot({ path: `${shots}/2-wrong-password.png` });

  await signIn(password);
  out("signed-in", { path: new URL(page.url()).pathname, user: await text("user") });
  await page.screenshot({ path: `${shots}/3-protected.png` });

  await page.reload();
  out("reloaded", { path: new URL(page.url()).pathname, user: await text("user") });

  await Promise.all([page.waitForURL(/\/login/), page.getByTestId("logout").click()]);
  await page.goto(`${appUrl}/protected`);
  out("after-logout", { path: new URL(page.url()).pathname });

  await signIn(password);
  const revoke = await fetch(`${adminUrl}/api/auth/admin/users/${encodeURIComponent(userId)}/revoke-sessions`, {
    method: "POST",
    headers: { Authorization: `Bearer ${adminToken}` },
  });
  await new Promise((r) => setTimeout(r, 1200)); // the example's guard caches answers for 1 s
  await page.goto(`${appUrl}/protected`);
  out("after-revoke", { revokeStatus: revoke.status, path: new URL(page.url()).pathname });

  let last = null;
  for (let i = 0; i < 8 && !(last ?? "").includes("try again in"); i++) {
    await signIn("still-not-the-password");
    last = await text("login-error");
  }
  out("throttled", { error: last });
  await page.screenshot({ path: `${shots}/4-throttled.png` });
} finally {
  await browser.close();
}

export const metadata = { title: "Phoenix example" };

export default function RootLayout({ children }: { children: React.ReactNode }) {
  return (
    <html lang="en">
      <body style={{ fontFamily: "system-ui, sans-serif", maxWidth: 420, margin: "4rem auto" }}>{children}</body>
    </html>
  );
}

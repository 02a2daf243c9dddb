import { auth } from "./auth";
import { guard } from "./phoenix";

// Every protected request checks the Phoenix session (cached briefly): a session revoked in
// Phoenix ends here too, though Auth.js's own JWT would still be valid.
export default auth((request) => guard.protect(request, request.auth?.phoenixSession));

export const config = { matcher: ["/protected/:path*"] };

/**
 * The one page served without a session: a form asking for admin.token. Plain HTML with its
 * style inline and no script, so it works before anything else is allowed.
 */
export function loginPage(error?: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Tern · sign in</title>
<style>
body{font:15px/1.5 system-ui,sans-serif;background:#f4f5f7;color:#1d2330;display:grid;place-items:center;min-height:100vh;margin:0}
form{background:#fff;padding:2rem 2.2rem;border-radius:8px;box-shadow:0 1px 4px #0002;width:22rem}
h1{font-size:1.3rem;margin:0 0 1rem}label{display:block;margin-bottom:.4rem}
input{width:100%;box-sizing:border-box;padding:.5rem;font:inherit;border:1px solid #b8bfcc;border-radius:4px}
button{margin-top:1rem;padding:.5rem 1.2rem;font:inherit;background:#1f5fbf;color:#fff;border:0;border-radius:4px;cursor:pointer}
p.error{color:#a61b1b;margin:.8rem 0 0}p.hint{color:#5b6475;font-size:.85rem}
</style></head>
<body><form method="post" action="/dashboard/login">
<h1>Tern dashboard</h1>
<label for="token">Admin token</label>
<input id="token" name="token" type="password" autocomplete="current-password" required autofocus>
<button type="submit">Sign in</button>
${error ? `<p class="error" role="alert">${escapeHtml(error)}</p>` : ''}
<p class="hint">The <code>admin.token</code> of tern.yaml. The browser keeps a session, not the token.</p>
</form></body></html>
`;
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

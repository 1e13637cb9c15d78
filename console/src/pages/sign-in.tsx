import { useState } from 'preact/hooks';
import { type Session, signIn } from '../session.ts';

export function SignInPage(props: { onSignedIn: (session: Session, token: string) => void }) {
  const [token, setToken] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  return (
    <main id="main" class="sign-in">
      <h1>edgeloop console</h1>
      <form
        onSubmit={async (event) => {
          event.preventDefault();
          setBusy(true);
          setError(null);
          const result = await signIn(token.trim());
          setBusy(false);
          if (result.ok) props.onSignedIn(result.session, token.trim());
          else setError(result.message);
        }}
      >
        <label>
          API token
          <input
            name="token"
            type="password"
            autocomplete="current-password"
            required
            autofocus
            value={token}
            onInput={(event) => setToken(event.currentTarget.value)}
          />
        </label>
        <p class="hint">
          The admin token <code>npm start</code> or <code>edgeloop serve</code> printed, or one made with{' '}
          <code>POST /api/v1/tokens</code>. It is kept in this tab only (sessionStorage).
        </p>
        {error ? (
          <p class="error" role="alert">
            {error}
          </p>
        ) : null}
        <button type="submit" class="primary" disabled={busy || token.trim() === ''}>
          {busy ? 'Signing in…' : 'Sign in'}
        </button>
      </form>
    </main>
  );
}

import { render } from 'preact';
import { signOut } from './api.ts';
import { OverviewPage } from './overview.tsx';

/** The dashboard's shell: its navigation and the page the path names. */
function App() {
  return (
    <>
      <header>
        <a class="brand" href="/dashboard/">Tern</a>
        <nav><a href="/dashboard/" class="on">Overview</a></nav>
        <button type="button" class="signout" onClick={() => void signOut()}>Sign out</button>
      </header>
      <main><OverviewPage /></main>
    </>
  );
}

render(<App />, document.getElementById('app') as HTMLElement);

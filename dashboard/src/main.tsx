import { render } from 'preact';
import { signOut } from './api.ts';
import { CampaignPage, CampaignsPage } from './campaigns.tsx';
import { OverviewPage } from './overview.tsx';
import { onLink, usePath } from './router.ts';
import { SitesPage } from './sites.tsx';

const PAGES = [
  { path: '/dashboard/', name: 'Overview', page: OverviewPage },
  { path: '/dashboard/campaigns', name: 'Campaigns', page: CampaignsPage },
  { path: '/dashboard/sites', name: 'Sites', page: SitesPage },
] as const;
const CAMPAIGN = /^\/dashboard\/campaigns\/(.+)$/;

/** The dashboard's shell: its navigation and the page the path names. */
function App() {
  const path = usePath();
  const campaign = CAMPAIGN.exec(path)?.[1];
  const current = campaign ? PAGES[1] : PAGES.find((p) => p.path === path) ?? PAGES[0];
  const Page = current.page;
  return (
    <>
      <header>
        <a class="brand" href="/dashboard/" onClick={onLink}>Tern</a>
        <nav>{PAGES.map((p) => <a href={p.path} class={p === current ? 'on' : ''} onClick={onLink}>{p.name}</a>)}</nav>
        <button type="button" class="signout" onClick={() => void signOut()}>Sign out</button>
      </header>
      <main>{campaign ? <CampaignPage id={decodeURIComponent(campaign)} /> : <Page />}</main>
    </>
  );
}

render(<App />, document.getElementById('app') as HTMLElement);

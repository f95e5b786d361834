/**
 * Builds the dashboard (docs/dashboard.md): dashboard/src → one script and one stylesheet, minified,
 * with Preact and uPlot inside, so the admin listener serves everything itself (no CDN; works
 * with no network). `--out DIR` (default dashboard/dist); `--budget` fails when the bundle is
 * over BUDGET, so CI catches a dependency that grows it.
 *   node dashboard/build.ts [--out DIR] [--budget]
 */
import { build } from 'esbuild';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { gzipSync } from 'node:zlib';

/** Bytes, minified and gzipped: what a browser fetches once. */
export const BUDGET = { 'app.js': { raw: 110_000, gzip: 42_000 }, 'app.css': { raw: 12_000, gzip: 4_000 } } as const;

const here = new URL('.', import.meta.url).pathname;
const { values } = parseArgs({ options: { out: { type: 'string' }, budget: { type: 'boolean' } } });
const out = resolve(values.out ?? join(here, 'dist'));
mkdirSync(out, { recursive: true });

await build({
  entryPoints: [join(here, 'src/main.tsx')],
  bundle: true,
  minify: true,
  format: 'esm',
  target: ['es2022', 'chrome110', 'firefox110', 'safari16'],
  jsx: 'automatic',
  jsxImportSource: 'preact',
  outfile: join(out, 'app.js'),
  legalComments: 'eof',
  logLevel: 'warning',
});
const css = [readFileSync(join(here, '../node_modules/uplot/dist/uPlot.min.css'), 'utf8'), readFileSync(join(here, 'src/app.css'), 'utf8')].join('\n');
writeFileSync(join(out, 'app.css'), css);
writeFileSync(join(out, 'index.html'), `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="tern-csrf" content="%CSRF%">
<title>Tern dashboard</title>
<link rel="stylesheet" href="/dashboard/assets/app.css">
<script type="module" src="/dashboard/assets/app.js"></script>
</head><body><div id="app"></div></body></html>
`);

let over = false;
for (const [file, limit] of Object.entries(BUDGET)) {
  const body = readFileSync(join(out, file));
  const gzip = gzipSync(body, { level: 9 }).length;
  const fits = body.length <= limit.raw && gzip <= limit.gzip;
  over ||= !fits;
  console.log(`dashboard ${file}: ${body.length} bytes, ${gzip} gzipped (budget ${limit.raw} / ${limit.gzip})${fits ? '' : '  OVER BUDGET'}`);
}
if (values.budget && over) process.exit(1);

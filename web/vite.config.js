// Two static pages (the citizen portal and the back-office console) sharing one small library.
// The gateway serves dist/ at /portal/, /console/ and /assets/ (gateway/routes/pages.py), so the pages
// call the API on their own origin: no CORS, no second server.
import { resolve } from 'node:path';
import { defineConfig } from 'vite';

const here = import.meta.dirname;

export default defineConfig({
  base: '/',
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    assetsInlineLimit: 0,
    rollupOptions: {
      input: {
        portal: resolve(here, 'portal/index.html'),
        console: resolve(here, 'console/index.html'),
      },
    },
  },
});

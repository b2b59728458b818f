// Debian's Chromium through playwright-core (never a browser of its own), with the flags this
// closed network needs: no background connections, no GPU, no sandbox as root.
import { chromium } from 'playwright-core';

export function launch() {
  return chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

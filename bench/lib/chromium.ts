// Headless Chromium as the console's screenshot and browser test launch it: Debian's package, no download.
/** No network on our machines: these keep Chromium from trying to reach Google's services (refused connections, noise). */
export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

// node run.mjs URL [timeoutMs]
//
// Opens URL in Debian's chromium (headless, driven by playwright-core) and
// waits until the page sets window.__done = true. Every console message of
// the page, and every uncaught page error, is printed as one stdout line
// "console: TEXT" (newlines in TEXT written as \n). Then one line
// "RESULT JSON" carries JSON.stringify(window.__result) ("null" when the page
// set none). internal/browser (browser.go) reads this output.
//
// timeoutMs (default 30000) bounds loading the page and waiting for __done;
// starting chromium is not counted.
//
// Exit codes: 0 the page set __done; 2 timeout (console lines and RESULT are
// still printed); 1 chromium could not be started or the page not loaded.
import { chromium } from 'playwright-core';

const executablePath = '/usr/bin/chromium';

const [url, timeoutArg] = process.argv.slice(2);
const timeout = timeoutArg === undefined ? 30000 : Number(timeoutArg);
if (!url || !Number.isFinite(timeout) || timeout <= 0) {
  console.error('usage: node run.mjs URL [timeoutMs]');
  process.exit(1);
}

const line = (s) => process.stdout.write(s.replace(/\r?\n/g, '\\n') + '\n');

let browser;
try {
  browser = await chromium.launch({ executablePath, headless: true, args: ['--no-sandbox'] });
} catch (e) {
  console.error(`run.mjs: cannot launch ${executablePath}: ${e.message}`);
  process.exit(1);
}

let code = 0;
try {
  const page = await browser.newPage();
  page.on('console', (msg) => line('console: ' + msg.text()));
  page.on('pageerror', (err) => line('console: pageerror: ' + (err.stack || err.message)));
  const deadline = Date.now() + timeout;
  try {
    await page.goto(url, { timeout });
  } catch (e) {
    if (e.name === 'TimeoutError') {
      console.error(`run.mjs: timeout: ${url} not loaded within ${timeout}ms`);
      code = 2;
    } else {
      console.error(`run.mjs: cannot load ${url}: ${e.message}`);
      code = 1;
    }
  }
  if (code === 0) {
    try {
      await page.waitForFunction(() => window.__done === true, null, {
        timeout: Math.max(1, deadline - Date.now()),
      });
    } catch (e) {
      console.error(`run.mjs: timeout: window.__done not set within ${timeout}ms`);
      code = 2;
    }
  }
  let result = null;
  try {
    result = await page.evaluate(() => JSON.stringify(window.__result) ?? null);
  } catch (e) {
    console.error(`run.mjs: cannot read window.__result: ${e.message}`);
  }
  line('RESULT ' + (result ?? 'null'));
} finally {
  // Never let a stuck close hold the exit code back.
  await Promise.race([browser.close(), new Promise((r) => setTimeout(r, 5000))]);
}
process.exit(code);

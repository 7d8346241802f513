import { chromium } from 'playwright-core';
import { AttackerSite } from './lib/attacker.mjs';
const BASE='http://127.0.0.1:47001';
const a = new AttackerSite(); await a.start();
const b = await chromium.launch({ executablePath: '/usr/bin/chromium', headless: true, args: ['--disable-gpu','--disable-background-networking','--disable-quic','--no-first-run','--disable-component-update','--disable-sync'] });
const ctx = await b.newContext();
const page = await ctx.newPage();
const bodies = [];
page.on('response', async (r) => { if (r.request().method()==='POST') { try { bodies.push(['resp-event', r.status(), (await r.text()).slice(0,80)]); } catch (e) { bodies.push(['resp-event-err', e.message]); } } });
page.on('requestfinished', (r) => bodies.push(['finished', r.url()]));
page.on('requestfailed', (r) => bodies.push(['failed', r.url(), r.failure()?.errorText]));
page.on('console', (m) => bodies.push(['console', m.text().slice(0,150)]));
const p = a.page(`${BASE}/login`, { csrf: 'x', username: 'demo', password: 'y' }, { framing: 'sandboxed-iframe' });
const posted = page.waitForResponse((r) => r.url() === `${BASE}/login` && r.request().method() === 'POST');
await page.goto(`${a.origins.otherPort}${p}`);
const r = await posted;
console.log('status', r.status());
try { await r.finished(); console.log('finished ok'); } catch (e) { console.log('finished err', e.message); }
try { console.log('body', (await r.body()).toString().slice(0, 100)); } catch (e) { console.log('body err', e.message); }
await new Promise((res) => setTimeout(res, 1000));
console.log(bodies);
console.log(page.frames().map((f) => f.url()));
await b.close(); await a.close();

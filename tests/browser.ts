import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { WebSocket } from 'undici';

/**
 * Headless Chromium driven over the DevTools protocol with undici's
 * WebSocket: what the report's browser test needs (open a page, read the
 * console, evaluate, screenshot) without a 14 MB driver package.
 */
export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

// Flags for this machine's closed network: no background connections, no sandbox as root.
const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--hide-scrollbars'];

export interface BrowserPage {
  /** Console errors, uncaught exceptions and failed loads, as they happen. */
  problems: string[];
  goto(url: string): Promise<void>;
  evaluate<T>(expression: string): Promise<T>;
  /** A PNG of the viewport, or of a clip in CSS pixels. */
  screenshot(clip?: { x: number; y: number; width: number; height: number }): Promise<Buffer>;
  close(): Promise<void>;
}

export async function openBrowser(viewport = { width: 1300, height: 1000 }): Promise<BrowserPage> {
  const profile = await mkdtemp(path.join(os.tmpdir(), 'instructify-chromium-'));
  const child: ChildProcess = spawn(CHROMIUM, [...FLAGS, `--user-data-dir=${profile}`, '--remote-debugging-port=0', `--window-size=${viewport.width},${viewport.height}`, 'about:blank'], { stdio: ['ignore', 'ignore', 'pipe'] });
  const wsUrl = await new Promise<string>((resolve, reject) => {
    let text = '';
    const timer = setTimeout(() => reject(new Error(`chromium did not start: ${text.slice(-500)}`)), 20_000);
    child.stderr!.on('data', (d: Buffer) => {
      text += d.toString();
      const m = /DevTools listening on (ws:\/\/\S+)/.exec(text);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    });
    child.on('exit', (code) => reject(new Error(`chromium exited (${code}): ${text.slice(-500)}`)));
  });
  const ws = new WebSocket(wsUrl);
  await new Promise<void>((resolve, reject) => {
    ws.addEventListener('open', () => resolve());
    ws.addEventListener('error', () => reject(new Error('cannot connect to chromium')));
  });
  let nextId = 1;
  const pending = new Map<number, { resolve: (v: Record<string, unknown>) => void; reject: (e: Error) => void }>();
  const listeners: ((method: string, params: Record<string, unknown>) => void)[] = [];
  ws.addEventListener('message', (ev) => {
    const msg = JSON.parse(String(ev.data)) as { id?: number; result?: Record<string, unknown>; error?: { message: string }; method?: string; params?: Record<string, unknown> };
    if (msg.id !== undefined) {
      const p = pending.get(msg.id);
      pending.delete(msg.id);
      if (msg.error) p?.reject(new Error(msg.error.message));
      else p?.resolve(msg.result ?? {});
    } else if (msg.method) for (const l of listeners) l(msg.method, msg.params ?? {});
  });
  const send = (method: string, params: object = {}, sessionId?: string) =>
    new Promise<Record<string, unknown>>((resolve, reject) => {
      const id = nextId++;
      pending.set(id, { resolve, reject });
      ws.send(JSON.stringify({ id, method, params, ...(sessionId ? { sessionId } : {}) }));
    });
  const { targetId } = (await send('Target.createTarget', { url: 'about:blank' })) as { targetId: string };
  const { sessionId } = (await send('Target.attachToTarget', { targetId, flatten: true })) as { sessionId: string };
  const page = (method: string, params: object = {}) => send(method, params, sessionId);
  const problems: string[] = [];
  let loaded: (() => void) | null = null;
  listeners.push((method, params) => {
    if (method === 'Runtime.consoleAPICalled' && params.type === 'error') problems.push(`console: ${JSON.stringify(params.args)}`);
    if (method === 'Runtime.exceptionThrown') problems.push(`exception: ${JSON.stringify(params.exceptionDetails)}`);
    if (method === 'Log.entryAdded' && (params.entry as { level: string }).level === 'error') problems.push(`log: ${(params.entry as { text: string }).text}`);
    if (method === 'Network.loadingFailed') problems.push(`load failed: ${JSON.stringify(params)}`);
    if (method === 'Page.loadEventFired') loaded?.();
  });
  await Promise.all([page('Page.enable'), page('Runtime.enable'), page('Log.enable'), page('Network.enable')]);
  await page('Emulation.setDeviceMetricsOverride', { width: viewport.width, height: viewport.height, deviceScaleFactor: 1, mobile: false });
  return {
    problems,
    async goto(url) {
      const done = new Promise<void>((resolve) => (loaded = resolve));
      await page('Page.navigate', { url });
      await done;
    },
    async evaluate<T>(expression: string) {
      const r = (await page('Runtime.evaluate', { expression, awaitPromise: true, returnByValue: true })) as { result: { value: T }; exceptionDetails?: unknown };
      if (r.exceptionDetails) throw new Error(`evaluate: ${JSON.stringify(r.exceptionDetails)}`);
      return r.result.value;
    },
    async screenshot(clip) {
      const r = (await page('Page.captureScreenshot', { format: 'png', ...(clip ? { clip: { ...clip, scale: 1 } } : {}) })) as { data: string };
      return Buffer.from(r.data, 'base64');
    },
    async close() {
      ws.close();
      child.kill();
      await new Promise((resolve) => child.once('exit', resolve));
      await rm(profile, { recursive: true, force: true });
    },
  };
}

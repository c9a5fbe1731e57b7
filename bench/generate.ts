import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { generate } from '../src/generate/generate.js';
import { prepare } from '../src/prepare/prepare.js';
import { writeSyntheticCoco } from '../src/sources/synthetic.js';

/**
 * bench/generate: the generation loop against a loopback server (its own
 * process) that answers after a fixed latency L and takes at most C
 * requests at once, so the best possible rate is C / L requests per second.
 * Prints the rate reached, its ratio to that ideal, the client's CPU per
 * request, and, in the same run, the rate of a baseline shaped like the
 * reference design: 80 workers, each on one image at a time.
 *
 *   npm run build && node dist/bench/generate.js [--images 2000] [--latency 200] [--capacity 256]
 */
const here = path.dirname(fileURLToPath(import.meta.url));
const arg = (name: string, fallback: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
};

async function startServer(latency: number, capacity: number): Promise<{ url: string; stop: () => void }> {
  const child = spawn(process.execPath, [path.join(here, 'llm-server.js'), String(latency), String(capacity)], { stdio: ['ignore', 'pipe', 'inherit'] });
  const [chunk] = (await once(child.stdout, 'data')) as [Buffer];
  return { url: chunk.toString().trim(), stop: () => child.kill() };
}

export interface GenerateBench {
  images: number;
  latencyMs: number;
  capacity: number;
  ideal: number;
  rate: number;
  ratio: number;
  cpuMicrosPerRequest: number;
  baselineRate: number;
  baselineImages: number;
  /** The loop's cost: requests and prompt tokens per kept conversation (speculative asks included). */
  requestsPerKept: number;
  promptTokensPerKept: number;
  kept: number;
}

export async function benchGenerate(o: { images: number; latency: number; capacity: number; log: (s: string) => void }): Promise<GenerateBench> {
  const dir = path.join(os.tmpdir(), 'instructify-bench', `generate-${o.images}`);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const instances = path.join(dir, 'instances.json');
  const captions = path.join(dir, 'captions.json');
  await writeSyntheticCoco({ instancesFile: instances, captionsFile: captions, count: o.images, seed: 11 });
  const prepared = path.join(dir, 'prepared');
  await prepare({ sources: [{ kind: 'coco-captions', paths: [captions] }, { kind: 'coco-instances', paths: [instances] }], images: null, out: prepared });

  // The baseline is the reference design: each of 80 workers takes one image and makes its calls one after another.
  const run = async (maxConcurrency: number, baseline: boolean) => {
    const server = await startServer(o.latency, o.capacity);
    try {
      const cpu0 = process.cpuUsage();
      const t0 = performance.now();
      const r = await generate({
        input: prepared,
        out: path.join(dir, `out-${maxConcurrency}`),
        ...(baseline ? { imagesInFlight: maxConcurrency, speculate: false } : {}),
        llm: { endpoints: [server.url], model: 'bench', maxConcurrency },
        distribution: 'llava',
        cache: null,
        loop: { seed: 1 },
      });
      const seconds = (performance.now() - t0) / 1000;
      const cpu = process.cpuUsage(cpu0);
      // Speculative asks whose answers went unused are work, but not useful work: the rate leaves them out.
      const useful = r.requests - r.speculativeUnused;
      const kept = Math.max(1, r.conversations);
      return { requests: r.requests, unused: r.speculativeUnused, seconds, rate: useful / seconds, cpuMicros: (cpu.user + cpu.system) / Math.max(1, r.requests), kept: r.conversations, requestsPerKept: r.requests / kept, promptTokensPerKept: r.promptTokens / kept };
    } finally {
      server.stop();
    }
  };

  const ideal = o.capacity / (o.latency / 1000);
  const ours = await run(o.capacity, false);
  o.log(`  instructify, --max-concurrency ${o.capacity}: ${ours.requests} requests (${ours.unused} speculative, unused) in ${ours.seconds.toFixed(1)}s = ${ours.rate.toFixed(0)} useful requests/s (ideal ${ideal.toFixed(0)}), ${ours.cpuMicros.toFixed(0)} us client CPU per request`);
  o.log(`  loop cost: ${ours.kept} conversations kept, ${ours.requestsPerKept.toFixed(2)} requests and ${ours.promptTokensPerKept.toFixed(0)} prompt tokens per kept conversation`);
  const baseline = await run(80, true);
  o.log(`  baseline, 80 workers with one image each: ${baseline.requests} requests in ${baseline.seconds.toFixed(1)}s = ${baseline.rate.toFixed(0)} requests/s`);
  return {
    images: o.images,
    latencyMs: o.latency,
    capacity: o.capacity,
    ideal,
    rate: ours.rate,
    ratio: ours.rate / ideal,
    cpuMicrosPerRequest: ours.cpuMicros,
    baselineRate: baseline.rate,
    baselineImages: o.images,
    requestsPerKept: ours.requestsPerKept,
    promptTokensPerKept: ours.promptTokensPerKept,
    kept: ours.kept,
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const log = (s: string) => process.stdout.write(s + '\n');
  const images = arg('images', 2000);
  const latency = arg('latency', 200);
  const capacity = arg('capacity', 256);
  log(`bench/generate: ${images} images, server latency ${latency} ms, capacity ${capacity}`);
  const r = await benchGenerate({ images, latency, capacity, log });
  log(`\nratio to ideal (C/L): ${r.ratio.toFixed(2)} (target 0.9); against the 80-worker baseline: ${(r.rate / r.baselineRate).toFixed(2)}x`);
}

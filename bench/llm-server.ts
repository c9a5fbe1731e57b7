import { fakeAnswer } from '../src/llm/fake-answers.js';
import { LoopbackLlmServer } from '../src/llm/loopback-server.js';

/**
 * The loopback LLM server in its own process, for benchmarks (so the
 * client's CPU can be measured apart from the server's):
 *   node dist/bench/llm-server.js LATENCY_MS CAPACITY [queue]
 * prints its base URL, then serves until killed. With `queue`, requests
 * above capacity wait their turn (as vLLM does) instead of getting 429.
 */
const [latency, capacity] = process.argv.slice(2, 4).map(Number);
const server = new LoopbackLlmServer({ latencyMs: latency ?? 200, capacity: capacity ?? 256, queue: process.argv[4] === 'queue', record: false, answer: (req) => fakeAnswer(req.messages.at(-1)!.content) });
process.stdout.write((await server.start()) + '\n');

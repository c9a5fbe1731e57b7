import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

/**
 * A loopback OpenAI-compatible server for tests and benchmarks: real HTTP on
 * 127.0.0.1, answering /v1/chat/completions. Each request is answered by the
 * next planned behaviour (or the default), so a test can make it misbehave:
 * throttle with Retry-After, fail, hang, reset the connection, or send
 * something that is not JSON. A capacity makes it answer 429 above that
 * many requests at once; a latency delays every answer.
 */
export type Behaviour =
  | { kind: 'ok'; content?: string; delayMs?: number; finishReason?: string }
  | { kind: 'status'; status: number; retryAfter?: string; body?: string }
  | { kind: 'hang' }
  | { kind: 'reset' }
  | { kind: 'malformed' };

export interface ChatRequest {
  model: string;
  messages: { role: string; content: string }[];
  temperature?: number;
  max_tokens?: number;
  seed?: number;
}

export interface LoopbackAnswer {
  /** null: the message has no content (a reasoning model cut short while thinking). */
  content: string | null;
  finishReason?: string;
  reasoningContent?: string;
}

export interface LoopbackServerOptions {
  /** Requests answered at once before the server says 429 (or, with `queue`, makes them wait). */
  capacity?: number;
  /** Above capacity, queue requests in arrival order as vLLM and SGLang do, instead of answering 429. */
  queue?: boolean;
  /** Delay before every answer. */
  latencyMs?: number;
  /**
   * The answer for a request when no behaviour is planned: its text, or the
   * text with the finish reason (default 'stop') and the reasoning that
   * vLLM and SGLang return beside the content.
   */
  answer?: (req: ChatRequest) => string | LoopbackAnswer;
  /** Keep every request's body and authorization header in `seen` (default true; benchmarks turn it off so memory stays flat). */
  record?: boolean;
}

export class LoopbackLlmServer {
  private server: http.Server | null = null;
  private readonly sockets = new Set<Socket>();
  private plan: Behaviour[] = [];
  private inFlight = 0;
  private readonly waiting: (() => void)[] = [];
  readonly seen: { requests: number; maxInFlight: number; authorization: (string | undefined)[]; bodies: ChatRequest[]; throttled: number } = {
    requests: 0,
    maxInFlight: 0,
    authorization: [],
    bodies: [],
    throttled: 0,
  };
  url = '';

  constructor(private readonly o: LoopbackServerOptions = {}) {}

  /** Answer the next requests with these behaviours, in order. */
  next(...behaviours: Behaviour[]): this {
    this.plan.push(...behaviours);
    return this;
  }

  async start(port = 0): Promise<string> {
    this.server = http.createServer((req, res) => this.handle(req, res));
    this.server.keepAliveTimeout = 60_000;
    this.server.on('connection', (s: Socket) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    await new Promise<void>((resolve) => this.server!.listen(port, '127.0.0.1', resolve));
    const { port: p } = this.server.address() as AddressInfo;
    this.url = `http://127.0.0.1:${p}/v1`;
    return this.url;
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => (body += c));
    req.on('end', () => {
      this.seen.requests++;
      const record = this.o.record ?? true;
      if (record) this.seen.authorization.push(req.headers.authorization);
      if (req.url !== '/v1/chat/completions' || req.method !== 'POST') {
        res.writeHead(404).end('not found');
        return;
      }
      let parsed: ChatRequest;
      try {
        parsed = JSON.parse(body) as ChatRequest;
      } catch {
        res.writeHead(400).end('bad json');
        return;
      }
      if (record) this.seen.bodies.push(parsed);
      const b = this.plan.shift() ?? { kind: 'ok' };
      if (b.kind === 'hang') return;
      if (b.kind === 'reset') {
        req.socket.destroy();
        return;
      }
      const full = this.o.capacity !== undefined && this.inFlight >= this.o.capacity;
      if (full && !this.o.queue) {
        this.seen.throttled++;
        res.writeHead(429, { 'retry-after': '0' }).end('{"error":"busy"}');
        return;
      }
      let answer = '';
      const finish = () => {
        this.inFlight--;
        this.waiting.shift()?.();
        if (b.kind === 'status') {
          res.writeHead(b.status, b.retryAfter !== undefined ? { 'retry-after': b.retryAfter } : {}).end(b.body ?? '{"error":"planned"}');
        } else if (b.kind === 'malformed') {
          res.writeHead(200, { 'content-type': 'application/json' }).end('{"choices": [ this is not json');
        } else {
          res.writeHead(200, { 'content-type': 'application/json' }).end(answer);
        }
      };
      const start = () => {
        if (b.kind === 'ok') {
          // The answer is made when the request starts, so the latency is all
          // the time it takes (a model's time is in its latency, not after it).
          const given = b.content ?? this.o.answer?.(parsed) ?? `echo: ${parsed.messages.at(-1)?.content.slice(0, 60) ?? ''}`;
          const a: LoopbackAnswer = typeof given === 'string' ? { content: given } : given;
          const content = a.content;
          answer = JSON.stringify({
            id: `cmpl-${this.seen.requests}`,
            object: 'chat.completion',
            model: parsed.model,
            choices: [
              {
                index: 0,
                message: { role: 'assistant', content, ...(a.reasoningContent !== undefined ? { reasoning_content: a.reasoningContent } : {}) },
                finish_reason: (b.kind === 'ok' ? b.finishReason : undefined) ?? a.finishReason ?? 'stop',
              },
            ],
            usage: { prompt_tokens: Math.ceil(body.length / 4), completion_tokens: Math.ceil(((content ?? '').length + (a.reasoningContent ?? '').length) / 4) },
          });
        }
        this.inFlight++;
        this.seen.maxInFlight = Math.max(this.seen.maxInFlight, this.inFlight);
        const delay = (b.kind === 'ok' ? b.delayMs : undefined) ?? this.o.latencyMs ?? 0;
        if (delay > 0) setTimeout(finish, delay);
        else finish();
      };
      if (full) this.waiting.push(start);
      else start();
    });
  }

  /** Stop listening and drop every connection (hanging requests included). */
  async stop(): Promise<void> {
    if (!this.server) return;
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server!.close(() => resolve()));
    this.server = null;
  }
}

import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { PurgeKind } from '../../../src/cdn/provider.ts';
import type { LoopbackCdn, RecordedCall } from './loopback.ts';

/**
 * The plumbing the loopback CDN servers share: a server on 127.0.0.1:0 that records every call, answers
 * the failures queued by `failNext` in place of the API, holds a call unanswered after `hangNext`, and
 * hands the rest to the provider's own handler.
 */

export interface Answer {
  status: number;
  headers?: Record<string, string>;
  body?: string;
}

/** What a handler sees: the call, and a place to note what the API purged. */
export type Handler = (call: RecordedCall, purged: (kind: PurgeKind, item: string) => void) => Answer;

/** A loopback CDN that can also leave the next call unanswered, for timeout tests. */
export interface HangingLoopbackCdn extends LoopbackCdn {
  /** The next API call gets no answer (until the server closes). */
  hangNext(): void;
}

export async function startLoopback(
  handler: Handler,
  /** The provider's error body for an injected failure. */
  failureBody: (status: number) => string,
): Promise<HangingLoopbackCdn> {
  const calls: RecordedCall[] = [];
  const purged: { kind: PurgeKind; item: string }[] = [];
  const failures: { status: number; retryAfter?: string }[] = [];
  let hangs = 0;

  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const call: RecordedCall = {
        method: req.method ?? '',
        url: req.url ?? '',
        headers: { ...req.headers },
        body: Buffer.concat(chunks).toString('utf8'),
      };
      calls.push(call);
      if (hangs > 0) {
        hangs -= 1;
        return;
      }
      const failure = failures.shift();
      const answer: Answer = failure
        ? {
            status: failure.status,
            headers: failure.retryAfter === undefined ? {} : { 'retry-after': failure.retryAfter },
            body: failureBody(failure.status),
          }
        : handler(call, (kind, item) => purged.push({ kind, item }));
      res.writeHead(answer.status, { 'content-type': 'application/json', ...answer.headers });
      res.end(answer.body ?? '');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  let closed: Promise<void> | undefined;

  return {
    url: `http://127.0.0.1:${port}`,
    calls,
    failNext(status, options = {}) {
      for (let i = 0; i < (options.times ?? 1); i++) {
        failures.push(
          options.retryAfter === undefined ? { status } : { status, retryAfter: options.retryAfter },
        );
      }
    },
    hangNext() {
      hangs += 1;
    },
    purged: () => [...purged],
    close() {
      closed ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closed;
    },
  };
}

/** The call's header as one string (the last one when repeated). */
export function header(call: RecordedCall, name: string): string | undefined {
  const value = call.headers[name.toLowerCase()];
  return Array.isArray(value) ? value.at(-1) : value;
}

export function json(status: number, value: unknown, headers: Record<string, string> = {}): Answer {
  return { status, headers, body: JSON.stringify(value) };
}

/** Deterministic traffic for one day, so that usage tests can check numbers. */
export function dayTraffic(day: string): { bytes: number; requests: number; cachedRequests: number } {
  const n = Number(day.slice(8, 10));
  return { bytes: n * 1_000_000, requests: n * 100, cachedRequests: n * 90 };
}

/** The UTC days from `first` to `last`, both included (YYYY-MM-DD). */
export function daysBetween(first: string, last: string): string[] {
  const out: string[] = [];
  for (let t = Date.parse(`${first}T00:00:00Z`); t <= Date.parse(`${last}T00:00:00Z`); t += 86_400_000) {
    out.push(new Date(t).toISOString().slice(0, 10));
  }
  return out;
}

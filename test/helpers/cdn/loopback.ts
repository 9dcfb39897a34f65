import type { PurgeKind } from '../../../src/cdn/provider.ts';

/** One API call a loopback CDN server received. */
export interface RecordedCall {
  method: string;
  /** Path and query as sent. */
  url: string;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** A loopback server speaking one provider's documented API (bound to 127.0.0.1:0). */
export interface LoopbackCdn {
  /** The API's base URL, to configure the provider with. */
  readonly url: string;
  readonly calls: RecordedCall[];
  /** The next `times` (default 1) API calls answer `status`, with Retry-After when given. */
  failNext(status: number, options?: { times?: number; retryAfter?: string }): void;
  /** What was purged so far, as this provider's API understood it. */
  purged(): { kind: PurgeKind; item: string }[];
  close(): Promise<void>;
}

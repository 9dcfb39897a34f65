/**
 * Resumable uploads over tus 1.0 (core, creation, creation-with-upload, termination, expiration), on a
 * local folder or S3, built on @tus/server with @tus/file-store and @tus/s3-store (src/uploads/storage.ts).
 *
 * The caller routes `<path>` and `<path>/<id>` here after authenticating, and passes the Principal:
 *
 *   OPTIONS <path>[/<id>]   discovery (Tus-Version, Tus-Extension, Tus-Max-Size); needs no principal
 *   POST    <path>          create (editor); 201 + relative Location `<path>/<id>` + Upload-Expires
 *   HEAD    <path>/<id>     offset (any role of the tenant)
 *   PATCH   <path>/<id>     append bytes (editor)
 *   DELETE  <path>/<id>     terminate (editor)
 *   anything else           405 with Allow
 *
 * Tenancy. The creating tenant is written into the upload's own stored record (the `conveyor-tenant`
 * metadata key, set server-side in onUploadCreate over whatever the client sent, and hidden from every
 * answer). Before the library sees a request for `<path>/<id>`, #lookup reads that record: a malformed id,
 * an unknown id and another tenant's upload all answer the same 404, so ids cannot be probed across tenants.
 * Ids are 128 random bits in hex.
 *
 * Hand-over (src/uploads/handover.ts). When the last byte is stored, onComplete gets the bytes
 * (`open()`) and makes the asset. Its answer (headers, JSON body) is written as a receipt next to the
 * uploads, then the upload's bytes are deleted. From then on the upload URL answers from the receipt: HEAD
 * says Upload-Offset = Upload-Length plus the receipt's headers (e.g. Asset-Id), a PATCH at
 * Upload-Offset = Upload-Length with no bytes replays the final answer, DELETE forgets the receipt. So a
 * final PATCH retried after a lost response, or a client that HEADs after reconnecting, never makes a
 * second asset; concurrent finishers of one upload in this process share one hand-over. If onComplete
 * throws, the upload is kept, the final request answers the problem (onComplete's ConveyorError, else 500),
 * and the client retries the hand-over with that empty PATCH. A client that only HEADs after an error
 * (tus-js-client) sees a complete upload and stops; that upload is never handed over and expires.
 * The remaining window: onComplete succeeded but the receipt could not be written; a retry makes the
 * asset again (its bytes deduplicate in the blob store).
 *
 * The final PATCH answers 204 as tus says, with onComplete's headers (Asset-Id) to tell the client what its
 * upload became; a POST that completes (creation-with-upload, or Upload-Length 0) keeps its 201, with
 * onComplete's JSON body when it returned one.
 *
 * Errors are problem documents (src/uploads/problems.ts maps the library's answers onto the catalog). A
 * creation that fails after its upload was stored (creation-with-upload on a full disk) removes that
 * upload: the error carries no Location, so no client could ever resume it.
 *
 * Several processes: uploads, records and receipts live in the shared storage, but @tus/server's lock and
 * @tus/s3-store's record cache are per process, so one upload must be served by one process at a time
 * (sticky routing by upload URL), as the library documents.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import { Metadata, Server, type Upload } from '@tus/server';
import type { ServerRequest } from 'srvx';
import { NodeRequest } from 'srvx/node';
import { ConveyorError, notFound } from '../errors.ts';
import { unauthenticated } from '../problems.ts';
import { type Principal, requireRole } from '../tenancy/principal.ts';
import {
  clientMetadata,
  completionAnswer,
  HandOvers,
  hasBody,
  offsetHeader,
  replayReceipt,
  TENANT_KEY,
  type TusCompletion,
  type TusCompletionResult,
  writeCompletion,
} from './handover.ts';
import { sendTusProblem, tusAnswerProblem } from './problems.ts';
import { TUS_VERSION } from './protocol.ts';
import { createTusBackend, type TusBackend, type TusStorageOptions } from './storage.ts';

export type { TusCompletion, TusCompletionResult } from './handover.ts';
export type { TusStorageOptions } from './storage.ts';

export interface TusUploadsOptions {
  /** Base path, e.g. '/api/v1/uploads' (no trailing slash). */
  path: string;
  storage: TusStorageOptions;
  /** Largest upload in bytes (Tus-Max-Size). */
  maxSize: number;
  /** An upload not handed over this long after its creation is expired (404) and swept. */
  expirationMs: number;
  /** How long the answer of a finished upload is replayed; default expirationMs. */
  receiptTtlMs?: number;
  onComplete(done: TusCompletion): Promise<TusCompletionResult>;
  /**
   * Called with the declared Upload-Length before an upload is created (before anything is stored);
   * throws (a ConveyorError) to refuse it, e.g. when the disk has no room for it.
   */
  admit?(length: number): Promise<void>;
  log?: { error(obj: object, msg: string): void };
  /** The clock of expiry decisions (ms since the epoch); tests move it. */
  now?: () => number;
}

export interface TusUploads {
  /**
   * Answers one tus request; never rejects. `principal` may be null for OPTIONS only (discovery and CORS
   * preflights carry no credentials); `requestId` names the request in problems and logs.
   */
  handle(
    req: IncomingMessage,
    res: ServerResponse,
    principal: Principal | null,
    context?: { requestId?: string },
  ): Promise<void>;
  /** Removes expired uploads and receipts; answers how many uploads it removed. Run it periodically. */
  cleanupExpired(): Promise<number>;
  /** Waits for running hand-overs, then releases the storage client. */
  close(): Promise<void>;
}

export function createTusUploads(options: TusUploadsOptions): TusUploads {
  return new TusEndpoint(options);
}

const URL_ID = /^[0-9a-f]{32}$/;
const ITEM_METHODS = new Set(['OPTIONS', 'HEAD', 'PATCH', 'DELETE']);

/** What one request carries through the library's hooks (keyed by the request object they receive). */
interface Exchange {
  principal: Principal | null;
  requestId: string;
  path: string;
  /** The upload's record, when the request names one. */
  record?: Upload;
  /** What a handler or hook threw: our own errors keep their catalog code through the library. */
  error?: unknown;
  /** The store id of the upload this request handed over, to release once the library is done. */
  handedOver?: string;
  /** The store id of the upload this request (a POST) created. */
  created?: string;
}

class TusEndpoint implements TusUploads {
  readonly #options: TusUploadsOptions;
  readonly #backend: TusBackend;
  readonly #server: Server;
  readonly #now: () => number;
  readonly #handOvers: HandOvers;
  readonly #exchanges = new WeakMap<ServerRequest, Exchange>();
  #closed = false;

  constructor(options: TusUploadsOptions) {
    if (!/^\/.*[^/]$/.test(options.path))
      throw new Error(`tus path must start and not end with /: ${options.path}`);
    if (!(options.maxSize > 0) || !(options.expirationMs > 0))
      throw new Error('tus maxSize and expirationMs must be > 0');
    this.#options = options;
    this.#now = options.now ?? Date.now;
    this.#backend = createTusBackend(options.storage, options.expirationMs);
    this.#handOvers = new HandOvers({
      backend: this.#backend,
      onComplete: options.onComplete,
      now: this.#now,
      log: options.log,
    });
    const prefix = this.#backend.idPrefix;
    this.#server = new Server({
      path: options.path,
      datastore: this.#backend,
      maxSize: options.maxSize,
      // CORS is the caller's (src/http/cors.ts); an empty list makes the library omit
      // Access-Control-Allow-Origin, and #send drops the other Access-Control-* it adds.
      allowedOrigins: [],
      namingFunction: () => prefix + randomBytes(16).toString('hex'),
      // Relative, so that no Host header is trusted ("This URL MAY be absolute or relative.").
      generateUrl: (_req, { path, id }) => `${path}/${id.slice(prefix.length)}`,
      getFileIdFromRequest: (_req, last) =>
        last !== undefined && URL_ID.test(last) ? prefix + last : undefined,
      onUploadCreate: async (req, upload) => {
        const metadata = { ...clientMetadata(upload.metadata), [TENANT_KEY]: this.#principal(req).tenantId };
        this.#exchanges.get(req)!.created = upload.id;
        return { metadata };
      },
      onUploadFinish: async (req, upload) => {
        const receipt = await this.#handOvers.finish(upload, this.#principal(req));
        this.#exchanges.get(req)!.handedOver = upload.id;
        const answer = completionAnswer(receipt, req.method === 'POST');
        return { status_code: answer.status, headers: answer.headers, body: answer.body };
      },
      onResponseError: (req, error) => {
        const exchange = this.#exchanges.get(req);
        if (exchange) exchange.error = error;
        return undefined;
      },
    });
  }

  async handle(
    req: IncomingMessage,
    res: ServerResponse,
    principal: Principal | null,
    context: { requestId?: string } = {},
  ): Promise<void> {
    const path = (req.url ?? '/').split('?')[0]!;
    const exchange: Exchange = { principal, requestId: context.requestId ?? randomUUID(), path };
    try {
      if (this.#closed) throw new ConveyorError('unavailable', 'Uploads are shutting down');
      const method = req.method ?? 'GET';
      const id = this.#route(method, path);
      if (method !== 'OPTIONS') {
        this.#admit(req, method, principal);
        if (method === 'POST') await this.#admitLength(req);
        if (id !== undefined && (await this.#lookup(req, res, exchange, id))) return;
      }
      const request = new NodeRequest({ req, res });
      this.#exchanges.set(request, exchange);
      const response = await this.#server.handleWeb(request);
      // Before answering, so that no request after the answer finds the upload instead of its receipt.
      if (exchange.handedOver) await this.#handOvers.release(exchange.handedOver);
      // A creation that failed after the upload was stored (creation-with-upload on a full disk, say)
      // answers without a Location, so nobody can ever resume that upload: remove it now.
      if (response.status >= 400 && exchange.created) await this.#discardCreated(exchange.created);
      await this.#send(req, res, response, exchange);
    } catch (error) {
      sendTusProblem(req, res, error, { path, requestId: exchange.requestId, log: this.#options.log });
    }
  }

  async cleanupExpired(): Promise<number> {
    const now = this.#now();
    return this.#backend.sweep({
      uploadsBefore: now - this.#options.expirationMs,
      receiptsBefore: now - (this.#options.receiptTtlMs ?? this.#options.expirationMs),
      keep: (id) => this.#handOvers.isRunning(id),
    });
  }

  async close(): Promise<void> {
    this.#closed = true;
    await this.#handOvers.settled();
    this.#backend.close();
  }

  async #discardCreated(id: string): Promise<void> {
    await this.#backend.discard(id).catch((error: unknown) => {
      this.#options.log?.error({ err: error, upload: id }, 'tus upload of a failed creation not removed');
    });
  }

  /** The URL id a request names (undefined for the collection); throws 404 or 405. */
  #route(method: string, path: string): string | undefined {
    const base = this.#options.path;
    if (path === base || path === `${base}/`) {
      if (method === 'OPTIONS' || method === 'POST') return undefined;
      throw new ConveyorError('method_not_allowed', `${base} answers OPTIONS and POST`, {
        headers: { allow: 'OPTIONS, POST' },
      });
    }
    const id = path.startsWith(`${base}/`) ? path.slice(base.length + 1) : '';
    // Checked before any storage is touched: a malformed id is just an unknown upload.
    if (!URL_ID.test(id)) throw notFound('upload');
    if (!ITEM_METHODS.has(method)) {
      throw new ConveyorError('method_not_allowed', 'An upload answers OPTIONS, HEAD, PATCH and DELETE', {
        headers: { allow: 'OPTIONS, HEAD, PATCH, DELETE' },
      });
    }
    return id;
  }

  /** Checks what needs no storage: credentials, protocol version, role and the headers we refuse. */
  #admit(req: IncomingMessage, method: string, principal: Principal | null): asserts principal is Principal {
    if (!principal) {
      throw unauthenticated('Uploads need an API key or token', false);
    }
    // tus 1.0 core: "If the version specified by the Client is not supported by the Server, it MUST respond
    // with the 412 Precondition Failed status and MUST include the Tus-Version header into the response.
    // In addition, the Server MUST NOT process the request."
    if (req.headers['tus-resumable'] !== TUS_VERSION) {
      throw new ConveyorError('precondition_failed', `Send Tus-Resumable: ${TUS_VERSION}`, {
        headers: { 'tus-version': TUS_VERSION },
      });
    }
    if (method !== 'HEAD') requireRole(principal, 'editor');
    // tus 1.0 creation: "If the Server supports deferring length, it MUST add creation-defer-length to the
    // Tus-Extension header." We do not (S3 would have to guess a part size for an unknown length), and say
    // so in plain words instead of the library's 501.
    if (
      req.headers['upload-defer-length'] !== undefined ||
      (method === 'PATCH' && req.headers['upload-length'])
    ) {
      throw new ConveyorError('bad_request', 'Deferred length is not supported: send Upload-Length on POST');
    }
    if (req.headers['upload-concat'] !== undefined) {
      throw new ConveyorError('bad_request', 'Concatenation is not supported');
    }
    if (method !== 'PATCH') return;
    // tus 1.0 core: "All PATCH requests MUST use Content-Type: application/offset+octet-stream, otherwise
    // the server SHOULD return a 415 Unsupported Media Type status."
    if (req.headers['content-type'] !== 'application/offset+octet-stream') {
      throw new ConveyorError(
        'unsupported_media_type',
        'PATCH needs Content-Type: application/offset+octet-stream',
      );
    }
    if (offsetHeader(req) === undefined) {
      throw new ConveyorError('bad_request', 'PATCH needs Upload-Offset: a non-negative integer');
    }
  }

  /**
   * Asks `admit` about a creation's declared length. A malformed length (400) and one over the maximum
   * (413) are left for the library to refuse: those answers hold whatever the free space.
   */
  async #admitLength(req: IncomingMessage): Promise<void> {
    const header = req.headers['upload-length'];
    const length = Number(header);
    if (!this.#options.admit || !Number.isSafeInteger(length) || length < 0 || String(length) !== header)
      return;
    if (length <= this.#options.maxSize) await this.#options.admit(length);
  }

  /**
   * Finds the upload `urlId` names, of the principal's tenant, or throws 404. Answers the request itself
   * (and resolves true) when the upload was already handed over, or when the request retries a hand-over.
   */
  async #lookup(
    req: IncomingMessage,
    res: ServerResponse,
    exchange: Exchange,
    urlId: string,
  ): Promise<boolean> {
    const principal = exchange.principal!;
    const id = this.#backend.idPrefix + urlId;
    const record = await this.#backend.record(id);
    if (record) {
      if (record.metadata?.[TENANT_KEY] !== principal.tenantId) throw notFound('upload');
      // tus 1.0 expiration: "If a Client does attempt to resume an upload which has since been removed by
      // the Server, the Server SHOULD respond with the 404 Not Found or 410 Gone status."
      if (Date.parse(record.creation_date ?? '') + this.#options.expirationMs < this.#now()) {
        throw new ConveyorError('not_found', 'The upload expired; start a new one');
      }
      exchange.record = record;
      if (req.method === 'PATCH' && offsetHeader(req) === record.size && !hasBody(req)) {
        const upload = await this.#backend.getUpload(id);
        if (upload.offset !== upload.size) return false;
        // Complete but not handed over (onComplete failed before): retry the hand-over ourselves, as
        // @tus/s3-store cannot write zero bytes to a completed multipart upload.
        const receipt = await this.#handOvers.finish(upload, principal);
        await this.#handOvers.release(id);
        writeCompletion(res, completionAnswer(receipt, false));
        return true;
      }
      return false;
    }
    const receipt = await this.#backend.readReceipt(id);
    if (!receipt || receipt.tenantId !== principal.tenantId) throw notFound('upload');
    await replayReceipt(req, res, this.#backend, id, receipt);
    return true;
  }

  /** Writes the library's answer: errors as problems, our metadata key removed, Upload-Expires on HEAD. */
  async #send(
    req: IncomingMessage,
    res: ServerResponse,
    response: Response,
    exchange: Exchange,
  ): Promise<void> {
    const body = Buffer.from(await response.arrayBuffer());
    if (response.status >= 400) {
      throw exchange.error ?? tusAnswerProblem(response.status, body.toString('utf8'));
    }
    // The client cut the connection (an interrupted PATCH): what it sent is stored, nobody listens.
    if (res.destroyed) return;
    const headers: OutgoingHttpHeaders = {};
    // CORS is the caller's (src/http/cors.ts): the library's Access-Control-* would override its headers.
    for (const [name, value] of response.headers) {
      if (!name.startsWith('access-control-')) headers[name] = value;
    }
    if (body.length === 0) delete headers['content-type'];
    const metadata = headers['upload-metadata'];
    if (typeof metadata === 'string') {
      const visible = clientMetadata(Metadata.parse(metadata));
      if (Object.keys(visible).length > 0) headers['upload-metadata'] = Metadata.stringify(visible);
      else delete headers['upload-metadata'];
    }
    const record = exchange.record;
    if (
      req.method === 'HEAD' &&
      record?.creation_date &&
      headers['upload-offset'] !== headers['upload-length']
    ) {
      const expires = Date.parse(record.creation_date) + this.#options.expirationMs;
      headers['upload-expires'] = new Date(expires).toUTCString();
    }
    res
      .writeHead(response.status, headers)
      .end(req.method === 'HEAD' || body.length === 0 ? undefined : body);
  }

  #principal(req: ServerRequest): Principal {
    const principal = this.#exchanges.get(req)?.principal;
    if (!principal) throw new Error('tus hook called for a request that was not admitted');
    return principal;
  }
}

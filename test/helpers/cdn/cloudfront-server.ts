import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { PurgeKind } from '../../../src/cdn/provider.ts';
import type { LoopbackCdn, RecordedCall } from './loopback.ts';

/** One day of the metrics the CloudWatch side answers. */
export interface DayMetrics {
  requests: number;
  bytes: number;
  /** Percent (0..100), as CloudWatch's CacheHitRate; absent when additional metrics are off. */
  cacheHitRate?: number;
}

export interface CloudFrontServerOptions {
  distributionId?: string;
  /** The distribution's domain: purged() names invalidated paths under it. */
  domain?: string;
  accessKeyId?: string;
  /**
   * Invalidations stay in progress until `completeInvalidations()`, and the documented in-progress limits
   * apply across calls. Off by default: each invalidation completes before the next call.
   */
  holdInvalidations?: boolean;
  /** The metrics of a day (YYYY-MM-DD); a day answering null has no datapoints. */
  metrics?: (day: string) => DayMetrics | null;
  /** Days of datapoints per GetMetricData page, past which NextToken continues. */
  pageDays?: number;
}

export interface CloudFrontServer extends LoopbackCdn {
  readonly distributionId: string;
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  /** Invalidations created, in order, as CloudFront recorded them. */
  readonly invalidations: { id: string; callerReference: string; paths: string[]; inProgress: boolean }[];
  completeInvalidations(): void;
  /** The next API call gets no answer until the server closes. */
  hangNext(): void;
}

const XMLNS = 'http://cloudfront.amazonaws.com/doc/2020-05-31/';
const INVALIDATION_PATH = /^\/2020-05-31\/distribution\/([^/]+)\/invalidation$/;
/** The documented in-progress limits (Developer Guide, "Concurrent invalidation request maximum"). */
const MAX_FILES_IN_PROGRESS = 3000;
const MAX_WILDCARDS_IN_PROGRESS = 15;

/**
 * A loopback CloudFront control plane and CloudWatch, speaking what @aws-sdk/client-cloudfront and
 * @aws-sdk/client-cloudwatch send: CreateInvalidation over REST-XML (POST
 * /2020-05-31/distribution/{id}/invalidation, 201 with the Invalidation and a Location header, errors as
 * an ErrorResponse document), and GetMetricData over the AWS JSON 1.0 protocol this SDK version uses for
 * CloudWatch (`X-Amz-Target: GraniteServiceVersion20100801.GetMetricData`, epoch-second timestamps, errors
 * as `__type` plus the `x-amzn-query-error` header of query-compatible services). Every call must carry a
 * SigV4 Authorization header for the configured access key and the right service.
 */
export async function startCloudFrontServer(
  options: CloudFrontServerOptions = {},
): Promise<CloudFrontServer> {
  const distributionId = options.distributionId ?? 'E2EXAMPLE0DIST';
  const domain = options.domain ?? 'https://d111111abcdef8.cloudfront.net';
  const accessKeyId = options.accessKeyId ?? 'AKIALOOPBACKCDN';
  const metrics =
    options.metrics ??
    ((day: string) => {
      const n = Number(day.slice(8, 10));
      return { requests: 1000 * n, bytes: 1_000_000 * n, cacheHitRate: 90 };
    });
  const pageDays = options.pageDays ?? 1000;
  const calls: RecordedCall[] = [];
  const invalidations: CloudFrontServer['invalidations'] = [];
  const failures: { status: number; retryAfter?: string }[] = [];
  const hanging: ServerResponse[] = [];
  let hangs = 0;

  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      calls.push({ method: req.method ?? '', url: req.url ?? '', headers: { ...req.headers }, body });
      if (hangs > 0) {
        hangs--;
        hanging.push(res);
        return;
      }
      handle(req, res, body);
    });
  });

  function handle(req: IncomingMessage, res: ServerResponse, body: string) {
    const target = req.headers['x-amz-target'];
    const api = typeof target === 'string' ? 'cloudwatch' : 'cloudfront';
    const fail = (status: number, code: string, message: string, retryAfter?: string) =>
      api === 'cloudwatch'
        ? jsonError(res, status, code, message, retryAfter)
        : xmlError(res, status, code, message, retryAfter);
    const auth = checkAuth(req, accessKeyId, api === 'cloudwatch' ? 'monitoring' : 'cloudfront');
    if (auth) return fail(403, 'InvalidClientTokenId', auth);
    const failure = failures.shift();
    if (failure) {
      return fail(failure.status, codeFor(failure.status, api), 'failing on purpose', failure.retryAfter);
    }
    if (api === 'cloudwatch') {
      if (target !== 'GraniteServiceVersion20100801.GetMetricData') {
        return fail(400, 'InvalidAction', `not served here: ${target}`);
      }
      return getMetricData(res, body);
    }
    const match = req.method === 'POST' ? INVALIDATION_PATH.exec(req.url ?? '') : null;
    if (!match) return fail(404, 'NotFound', `not served here: ${req.method} ${req.url}`);
    if (decodeURIComponent(match[1]!) !== distributionId) {
      return fail(404, 'NoSuchDistribution', 'The specified distribution does not exist.');
    }
    createInvalidation(res, body, fail);
  }

  function createInvalidation(
    res: ServerResponse,
    body: string,
    fail: (status: number, code: string, message: string) => void,
  ) {
    const callerReference = xmlText(body, 'CallerReference');
    const quantity = Number(xmlText(body, 'Quantity'));
    const paths = [...body.matchAll(/<Path>([\s\S]*?)<\/Path>/g)].map((m) => unescapeXml(m[1]!));
    if (!body.includes(`<InvalidationBatch xmlns="${XMLNS}"`) || callerReference === null) {
      return fail(400, 'MalformedInput', 'An InvalidationBatch with a CallerReference is required.');
    }
    if (quantity !== paths.length) {
      return fail(400, 'InconsistentQuantities', 'The value of Quantity and the size of Items do not match.');
    }
    if (paths.length === 0 || paths.some((p) => !p.startsWith('/') || p.slice(0, -1).includes('*'))) {
      return fail(400, 'InvalidArgument', 'Your request contains one or more invalid invalidation paths.');
    }
    const earlier = invalidations.find((i) => i.callerReference === callerReference);
    if (earlier) {
      if (earlier.paths.join('\n') !== paths.join('\n')) {
        return fail(409, 'InvalidationBatchAlreadyExists', 'The CallerReference was used for other paths.');
      }
      return answerInvalidation(res, earlier.id, callerReference, paths);
    }
    if (!options.holdInvalidations) completeInvalidations();
    const pending = invalidations.filter((i) => i.inProgress).flatMap((i) => i.paths);
    const wildcards = (list: string[]) => list.filter((p) => p.endsWith('*')).length;
    const files = (list: string[]) => list.length - wildcards(list);
    if (
      files(pending) + files(paths) > MAX_FILES_IN_PROGRESS ||
      wildcards(pending) + wildcards(paths) > MAX_WILDCARDS_IN_PROGRESS
    ) {
      return fail(
        400,
        'TooManyInvalidationsInProgress',
        'You have exceeded the maximum number of allowable InProgress invalidation batch requests, or invalidation objects.',
      );
    }
    const id = `I${randomUUID().replace(/-/g, '').slice(0, 13).toUpperCase()}`;
    invalidations.push({ id, callerReference, paths, inProgress: true });
    answerInvalidation(res, id, callerReference, paths);
  }

  function answerInvalidation(
    res: ServerResponse,
    id: string,
    callerReference: string,
    paths: string[],
  ): void {
    const items = paths.map((p) => `<Path>${escapeXml(p)}</Path>`).join('');
    res.writeHead(201, {
      'content-type': 'text/xml',
      location: `https://cloudfront.amazonaws.com/2020-05-31/distribution/${distributionId}/invalidation/${id}`,
      'x-amz-request-id': randomUUID(),
    });
    res.end(
      `<?xml version="1.0"?>\n<Invalidation xmlns="${XMLNS}"><Id>${id}</Id><Status>InProgress</Status>` +
        `<CreateTime>${new Date().toISOString()}</CreateTime><InvalidationBatch><Paths>` +
        `<Quantity>${paths.length}</Quantity><Items>${items}</Items></Paths>` +
        `<CallerReference>${escapeXml(callerReference)}</CallerReference></InvalidationBatch></Invalidation>`,
    );
  }

  function getMetricData(res: ServerResponse, body: string) {
    const input = JSON.parse(body) as {
      MetricDataQueries: {
        Id: string;
        MetricStat: {
          Metric: { Namespace: string; MetricName: string; Dimensions: { Name: string; Value: string }[] };
          Period: number;
          Stat: string;
        };
      }[];
      StartTime: number;
      EndTime: number;
      NextToken?: string;
    };
    const days: string[] = [];
    for (let t = input.StartTime * 1000; t < input.EndTime * 1000; t += 86_400_000) {
      days.push(new Date(t).toISOString().slice(0, 10));
    }
    const offset = input.NextToken ? Number(input.NextToken) : 0;
    const page = days.slice(offset, offset + pageDays);
    const results = [];
    for (const query of input.MetricDataQueries) {
      const { Metric, Period, Stat } = query.MetricStat;
      if (Period !== 86_400)
        return jsonError(res, 400, 'InvalidParameterValue', `period ${Period}, not daily`);
      const dims = Object.fromEntries(Metric.Dimensions.map((d) => [d.Name, d.Value]));
      // CloudWatch answers no datapoints, not an error, for a metric it does not have.
      const known =
        Metric.Namespace === 'AWS/CloudFront' &&
        dims.DistributionId === distributionId &&
        dims.Region === 'Global';
      const pick = (m: DayMetrics): number | undefined =>
        Metric.MetricName === 'Requests' && Stat === 'Sum'
          ? m.requests
          : Metric.MetricName === 'BytesDownloaded' && Stat === 'Sum'
            ? m.bytes
            : Metric.MetricName === 'CacheHitRate' && Stat === 'Average'
              ? m.cacheHitRate
              : undefined;
      const timestamps: number[] = [];
      const values: number[] = [];
      for (const day of known ? page : []) {
        const m = metrics(day);
        const value = m ? pick(m) : undefined;
        if (value === undefined) continue;
        timestamps.push(Date.parse(`${day}T00:00:00Z`) / 1000);
        values.push(value);
      }
      results.push({
        Id: query.Id,
        Label: Metric.MetricName,
        Timestamps: timestamps,
        Values: values,
        StatusCode: 'Complete',
      });
    }
    const next = offset + pageDays < days.length ? String(offset + pageDays) : undefined;
    res.writeHead(200, { 'content-type': 'application/x-amz-json-1.0', 'x-amzn-requestid': randomUUID() });
    res.end(
      JSON.stringify({ MetricDataResults: results, Messages: [], ...(next ? { NextToken: next } : {}) }),
    );
  }

  function completeInvalidations(): void {
    for (const i of invalidations) i.inProgress = false;
  }

  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  let closed: Promise<void> | null = null;

  return {
    url: `http://127.0.0.1:${port}`,
    distributionId,
    accessKeyId,
    secretAccessKey: 'loopback-secret-key',
    calls,
    invalidations,
    completeInvalidations,
    failNext(status, failOptions = {}) {
      for (let i = 0; i < (failOptions.times ?? 1); i++) {
        failures.push({
          status,
          ...(failOptions.retryAfter !== undefined ? { retryAfter: failOptions.retryAfter } : {}),
        });
      }
    },
    hangNext() {
      hangs++;
    },
    purged() {
      const out: { kind: PurgeKind; item: string }[] = [];
      for (const { paths } of invalidations) {
        for (const path of paths) {
          if (path === '/*') out.push({ kind: 'all', item: `${domain}/` });
          else if (path.endsWith('*')) out.push({ kind: 'prefixes', item: `${domain}${path.slice(0, -1)}` });
          else out.push({ kind: 'urls', item: `${domain}${path}` });
        }
      }
      return out;
    },
    close() {
      closed ??= (async () => {
        for (const res of hanging) res.destroy();
        server.closeAllConnections();
        server.close();
        await once(server, 'close');
      })();
      return closed;
    },
  };
}

/** SigV4 as the SDKs send it: `AWS4-HMAC-SHA256 Credential=<key>/<date>/<region>/<service>/aws4_request`. */
function checkAuth(req: IncomingMessage, accessKeyId: string, service: string): string | null {
  const auth = req.headers.authorization ?? '';
  const match =
    /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/([^/]+)\/aws4_request, SignedHeaders=([^,]+), Signature=[0-9a-f]{64}$/.exec(
      auth,
    );
  if (!match) return 'The request is not signed with SigV4.';
  if (match[1] !== accessKeyId) return 'The security token included in the request is invalid.';
  if (match[4] !== service) return `Credential should be scoped to correct service: '${service}'.`;
  if (!req.headers['x-amz-date'] || !match[5]!.split(';').includes('x-amz-date')) {
    return 'The request must sign x-amz-date.';
  }
  return null;
}

/** The error code each API answers with a status (CloudFront's and CloudWatch's own names). */
function codeFor(status: number, api: 'cloudfront' | 'cloudwatch'): string {
  if (status === 429) return 'Throttling';
  if (status === 400) return api === 'cloudfront' ? 'InvalidArgument' : 'InvalidParameterValue';
  if (status === 401) return 'InvalidClientTokenId';
  if (status === 403) return 'AccessDenied';
  if (status === 404) return api === 'cloudfront' ? 'NoSuchDistribution' : 'ResourceNotFound';
  return status === 503 ? 'ServiceUnavailable' : 'InternalFailure';
}

function xmlError(
  res: ServerResponse,
  status: number,
  code: string,
  message: string,
  retryAfter?: string,
): void {
  const type = status >= 500 ? 'Receiver' : 'Sender';
  res.writeHead(status, { 'content-type': 'text/xml', ...(retryAfter ? { 'retry-after': retryAfter } : {}) });
  res.end(
    `<?xml version="1.0"?>\n<ErrorResponse xmlns="${XMLNS}"><Error><Type>${type}</Type><Code>${code}</Code>` +
      `<Message>${escapeXml(message)}</Message></Error><RequestId>${randomUUID()}</RequestId></ErrorResponse>`,
  );
}

function jsonError(
  res: ServerResponse,
  status: number,
  code: string,
  message: string,
  retryAfter?: string,
): void {
  const fault = status >= 500 ? 'Receiver' : 'Sender';
  res.writeHead(status, {
    'content-type': 'application/x-amz-json-1.0',
    'x-amzn-query-error': `${code};${fault}`,
    ...(retryAfter ? { 'retry-after': retryAfter } : {}),
  });
  res.end(JSON.stringify({ __type: `com.amazonaws.cloudwatch#${code}`, message }));
}

function xmlText(xml: string, tag: string): string | null {
  const match = new RegExp(`<${tag}>([\\s\\S]*?)</${tag}>`).exec(xml);
  return match ? unescapeXml(match[1]!) : null;
}

function escapeXml(text: string): string {
  return text.replace(/[<>&"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function unescapeXml(text: string): string {
  return text.replace(/&(#x[0-9a-f]+|#\d+|amp|lt|gt|quot|apos);/gi, (_, entity: string) => {
    const named: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };
    if (entity.startsWith('#x') || entity.startsWith('#X'))
      return String.fromCodePoint(Number.parseInt(entity.slice(2), 16));
    if (entity.startsWith('#')) return String.fromCodePoint(Number(entity.slice(1)));
    return named[entity.toLowerCase()]!;
  });
}

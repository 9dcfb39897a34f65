import { randomBytes } from 'node:crypto';
import {
  daysBetween,
  dayTraffic,
  type HangingLoopbackCdn,
  header,
  json,
  startLoopback,
} from './http-loopback.ts';

/**
 * Fastly's API on loopback: `POST /service/{id}/purge` (keys in `Surrogate-Key` or `{"surrogate_keys"}`,
 * at most 256), `POST /purge/{host/path}`, `POST /service/{id}/purge_all` and `GET /stats/service/{id}`
 * (`by=day`), with the `Fastly-Key` header; errors as `{"msg", "detail"}`.
 */

const MAX_KEYS = 256;
const purgeId = () => `${randomBytes(4).toString('hex')}-${Date.now()}`;

export async function startFastlyServer(options: {
  serviceId: string;
  apiToken: string;
}): Promise<HangingLoopbackCdn> {
  return startLoopback(
    (call, purged) => {
      if (header(call, 'fastly-key') !== options.apiToken) {
        return json(401, { msg: 'Provided credentials are missing or invalid' });
      }
      const url = new URL(call.url, 'http://api.fastly.com');
      const service = `/service/${options.serviceId}`;
      if (call.method === 'POST' && url.pathname === `${service}/purge`) {
        const fromHeader = header(call, 'surrogate-key');
        const keys =
          fromHeader !== undefined
            ? fromHeader.split(' ').filter(Boolean)
            : ((JSON.parse(call.body || '{}') as { surrogate_keys?: string[] }).surrogate_keys ?? []);
        if (keys.length === 0 || keys.length > MAX_KEYS) {
          return json(400, {
            msg: 'Bad request',
            detail: `Between 1 and ${MAX_KEYS} surrogate keys per request`,
          });
        }
        const answer: Record<string, string> = {};
        for (const key of keys) {
          purged('tags', key);
          answer[key] = purgeId();
        }
        return json(200, answer);
      }
      if (call.method === 'POST' && url.pathname === `${service}/purge_all`) {
        if (header(call, 'fastly-soft-purge') !== undefined) {
          return json(400, { msg: 'Bad request', detail: 'purge_all cannot be soft' });
        }
        purged('all', '*');
        return json(200, { status: 'ok' });
      }
      if (call.method === 'POST' && url.pathname.startsWith('/purge/')) {
        purged('urls', decodeURI(call.url.slice('/purge/'.length)));
        return json(200, { status: 'ok', id: purgeId() });
      }
      if (call.method === 'GET' && url.pathname === `/stats${service}`) {
        const from = Number(url.searchParams.get('from'));
        const to = Number(url.searchParams.get('to'));
        const first = new Date(from * 1000).toISOString().slice(0, 10);
        const last = new Date((to - 1) * 1000).toISOString().slice(0, 10);
        const data = daysBetween(first, last).map((day) => {
          const t = dayTraffic(day);
          return {
            service_id: options.serviceId,
            start_time: Date.parse(`${day}T00:00:00Z`) / 1000,
            requests: t.requests,
            bandwidth: t.bytes,
            hits: t.cachedRequests,
            miss: t.requests - t.cachedRequests,
            hit_ratio: t.cachedRequests / t.requests,
          };
        });
        return json(200, {
          status: 'success',
          meta: { from, to, by: 'day', region: 'all' },
          msg: null,
          data,
        });
      }
      return json(404, { msg: 'Record not found', detail: `Cannot find ${url.pathname}` });
    },
    (status) => JSON.stringify({ msg: `injected ${status}`, detail: '' }),
  );
}

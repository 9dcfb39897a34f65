import {
  daysBetween,
  dayTraffic,
  type HangingLoopbackCdn,
  header,
  json,
  startLoopback,
} from './http-loopback.ts';

/**
 * Bunny's API on loopback: `POST /purge?url=` (a trailing `*` purges everything under it), `POST
 * /pullzone/{id}/purgeCache` (all, or one `CacheTag`) and `GET /statistics`, with the `AccessKey` header;
 * errors in Bunny's shapes (`{"HttpCode", "Message"}` for auth, `{"ErrorKey", "Field", "Message"}` for
 * validation).
 */

function validation(field: string, message: string) {
  return json(400, { ErrorKey: 'validation', Field: field, Message: message });
}

export async function startBunnyServer(options: {
  pullZoneId: string;
  accessKey: string;
}): Promise<HangingLoopbackCdn> {
  return startLoopback(
    (call, purged) => {
      if (header(call, 'accesskey') !== options.accessKey) {
        return json(401, { HttpCode: 401, Message: 'Authorization has been denied for this request.' });
      }
      const url = new URL(call.url, 'http://api.bunny.net');
      if (call.method === 'POST' && url.pathname === '/purge') {
        const target = url.searchParams.getAll('url');
        if (target.length !== 1 || !/^https?:\/\//.test(target[0]!))
          return validation('url', 'One absolute URL is required');
        const item = target[0]!;
        if (item.endsWith('*')) purged('prefixes', item.slice(0, -1));
        else purged('urls', item);
        return { status: 200 };
      }
      if (call.method === 'POST' && url.pathname === `/pullzone/${options.pullZoneId}/purgeCache`) {
        if (call.body.trim() === '') {
          purged('all', '*');
          return { status: 204 };
        }
        let body: { CacheTag?: unknown };
        try {
          body = JSON.parse(call.body) as { CacheTag?: unknown };
        } catch {
          return validation('body', 'The request body is not valid JSON');
        }
        if (typeof body.CacheTag !== 'string' || body.CacheTag === '') {
          return validation('CacheTag', 'CacheTag must be one tag');
        }
        purged('tags', body.CacheTag);
        return { status: 204 };
      }
      if (call.method === 'GET' && url.pathname === '/statistics') {
        if (url.searchParams.get('pullZone') !== options.pullZoneId)
          return validation('pullZone', 'Unknown pull zone');
        const from = url.searchParams.get('dateFrom')!.slice(0, 10);
        const to = url.searchParams.get('dateTo')!.slice(0, 10);
        const bandwidth: Record<string, number> = {};
        const requests: Record<string, number> = {};
        const hitRate: Record<string, number> = {};
        for (const day of daysBetween(from, to)) {
          const t = dayTraffic(day);
          const key = `${day}T00:00:00Z`;
          bandwidth[key] = t.bytes;
          requests[key] = t.requests;
          hitRate[key] = (100 * t.cachedRequests) / t.requests;
        }
        const sum = (chart: Record<string, number>) => Object.values(chart).reduce((a, b) => a + b, 0);
        return json(200, {
          TotalBandwidthUsed: sum(bandwidth),
          TotalRequestsServed: sum(requests),
          CacheHitRate: 90,
          BandwidthUsedChart: bandwidth,
          RequestsServedChart: requests,
          CacheHitRateChart: hitRate,
        });
      }
      return json(404, { HttpCode: 404, Message: 'Not found' });
    },
    (status) => JSON.stringify({ HttpCode: status, Message: `injected ${status}` }),
  );
}

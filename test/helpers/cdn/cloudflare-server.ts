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
 * Cloudflare's API on loopback: `POST /client/v4/zones/{zone}/purge_cache` and `POST /client/v4/graphql`
 * (httpRequests1dGroups), Bearer token auth, answers in the v4 envelope
 * (`{success, errors, messages, result}`), at most 100 items per purge.
 */

const MAX_ITEMS = 100;

function envelope(status: number, errors: { code: number; message: string }[], result: unknown = null) {
  return json(status, { success: errors.length === 0, errors, messages: [], result });
}

export async function startCloudflareServer(options: {
  zoneId: string;
  apiToken: string;
}): Promise<HangingLoopbackCdn> {
  const server = await startLoopback(
    (call, purged) => {
      if (header(call, 'authorization') !== `Bearer ${options.apiToken}`) {
        return envelope(403, [{ code: 10000, message: 'Authentication error' }]);
      }
      const path = call.url.split('?')[0];
      if (call.method === 'POST' && path === `/client/v4/zones/${options.zoneId}/purge_cache`) {
        let body: Record<string, unknown>;
        try {
          body = JSON.parse(call.body) as Record<string, unknown>;
        } catch {
          return envelope(400, [
            {
              code: 1012,
              message:
                'Request must contain one of "purge_everything", "files", "tags", "hosts" or "prefixes"',
            },
          ]);
        }
        if (body['purge_everything'] === true) {
          purged('all', '*');
          return envelope(200, [], { id: randomBytes(16).toString('hex') });
        }
        const lists = (['files', 'tags', 'prefixes', 'hosts'] as const).filter((k) => Array.isArray(body[k]));
        if (lists.length !== 1) {
          return envelope(400, [{ code: 1012, message: 'Request must contain exactly one purge type' }]);
        }
        const key = lists[0]!;
        const items = body[key] as unknown[];
        if (items.length === 0 || items.length > MAX_ITEMS) {
          return envelope(400, [{ code: 1016, message: `A purge may carry 1 to ${MAX_ITEMS} ${key}` }]);
        }
        const kind = key === 'files' ? 'urls' : key === 'hosts' ? 'prefixes' : key;
        for (const item of items) purged(kind, String(item));
        return envelope(200, [], { id: randomBytes(16).toString('hex') });
      }
      if (call.method === 'POST' && path === '/client/v4/graphql') {
        const { variables } = JSON.parse(call.body) as {
          variables: { zoneTag: string; from: string; to: string };
        };
        if (variables.zoneTag !== options.zoneId) {
          return json(200, { data: null, errors: [{ message: 'zone not found or not authorized' }] });
        }
        const groups = daysBetween(variables.from, variables.to).map((date) => {
          const t = dayTraffic(date);
          return {
            dimensions: { date },
            sum: {
              bytes: t.bytes,
              requests: t.requests,
              cachedBytes: t.bytes * 0.9,
              cachedRequests: t.cachedRequests,
            },
          };
        });
        return json(200, { data: { viewer: { zones: [{ httpRequests1dGroups: groups }] } }, errors: null });
      }
      return envelope(404, [{ code: 7003, message: 'Could not route to the requested path' }]);
    },
    (status) =>
      JSON.stringify({
        success: false,
        errors: [{ code: status, message: `injected ${status}` }],
        messages: [],
        result: null,
      }),
  );
  return Object.assign(server, { url: `${server.url}/client/v4` });
}

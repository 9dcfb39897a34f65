import { type HangingLoopbackCdn, header, startLoopback } from './http-loopback.ts';

/**
 * A Varnish with the purge VCL Conveyor's Varnish provider expects, on loopback: `PURGE <path>` purges
 * the object under `Host` and that URL; `PURGE` with `xkey-purge` or `xkey-softpurge` purges the tagged
 * objects (space-separated tags) and reports the count in `xkey-purged`. Any other method is not a
 * purge here (405, as the VCL's synth answers a client it does not allow). `maxTags` stands for
 * `http_req_hdr_len`: a longer tag header is 400, as Varnish answers an overlong header.
 */

export async function startVarnishServer(options: {
  maxTags: number;
  method?: string;
}): Promise<HangingLoopbackCdn> {
  const method = options.method ?? 'PURGE';
  const synth = (status: number, reason: string) => ({
    status,
    headers: { 'content-type': 'text/html; charset=utf-8' },
    body: `<!DOCTYPE html><html><head><title>${status} ${reason}</title></head><body><h1>Error ${status} ${reason}</h1></body></html>`,
  });
  return startLoopback(
    (call, purged) => {
      if (call.method !== method) return synth(405, 'Not allowed.');
      const soft = header(call, 'xkey-softpurge');
      const hard = header(call, 'xkey-purge');
      const tags = soft ?? hard;
      if (tags !== undefined) {
        const list = tags.split(' ').filter(Boolean);
        if (list.length === 0 || list.length > options.maxTags) return synth(400, 'Bad Request');
        for (const tag of list) purged('tags', tag);
        return { status: 200, headers: { 'xkey-purged': String(list.length) }, body: '' };
      }
      purged('urls', `${header(call, 'host')}${call.url}`);
      return synth(200, 'Purged');
    },
    (status) => synth(status, 'Injected').body,
  );
}

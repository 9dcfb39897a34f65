import type { OutgoingHttpHeaders } from 'node:http';
import type { Representation } from '../delivery/lookup.ts';
import type { TagHeader } from './provider.ts';

/**
 * Cache tags on delivery responses: every public response names what it was made from, in the header
 * each configured CDN reads (`Cache-Tag`, `CDN-Tag`, `Surrogate-Key`, `xkey`), so that one tag purge
 * removes everything a change affects from every edge:
 *
 * - the asset (`ast_…`): its latest URL, its versions, and everything derived from either;
 * - the version (`ver_…`), on a version's URLs: the original and every output derived from it (variants,
 *   transforms, the HLS ladder);
 * - `<asset>-derived` on derived outputs only: purges them and keeps the originals;
 * - the tenant (`ten_…`): everything of one tenant, e.g. when it is suspended.
 *
 * Tags are ids, so they need no escaping in any of the headers, and four of them are far under every
 * header's limit; the limit is still kept, dropping the least specific (the tenant's) first. The header
 * values depend only on the representation and are made once per looked-up representation, as the
 * origin's other fixed headers are: the hot path copies a ready object. Private responses carry none
 * (they are `no-store`, and their tags would name what a viewer may not know).
 */
export class CacheTags {
  readonly #headers: readonly TagHeader[];
  readonly #made = new WeakMap<Representation, OutgoingHttpHeaders>();

  /** `headers`: the configured providers' tag headers; one per header name. */
  constructor(headers: readonly TagHeader[]) {
    const byName = new Map<string, TagHeader>();
    for (const header of headers) {
      const name = header.name.toLowerCase();
      const seen = byName.get(name);
      // Two providers reading one header (two Varnish tiers): the stricter limit holds for both.
      if (!seen || header.maxBytes < seen.maxBytes) byName.set(name, { ...header, name });
    }
    this.#headers = [...byName.values()];
  }

  /** Whether any configured provider reads tags: without one, delivery adds nothing. */
  get enabled(): boolean {
    return this.#headers.length > 0;
  }

  /** The tag headers of a public response for `rep`, made once per representation. */
  headersFor(rep: Representation): OutgoingHttpHeaders {
    let made = this.#made.get(rep);
    if (!made) {
      const tags = tagsOf(rep);
      made = {};
      for (const header of this.#headers) made[header.name] = joinWithin(tags, header);
      this.#made.set(rep, made);
    }
    return made;
  }
}

/** The tags of a representation, most specific first. */
export function tagsOf(rep: Representation): string[] {
  return [
    rep.assetId,
    ...(rep.versionId ? [rep.versionId] : []),
    ...(rep.derived ? [`${rep.assetId}-derived`] : []),
    rep.tenantId,
  ];
}

/** `tags` joined by the header's separator, as many as fit in its limit (the first always does). */
function joinWithin(tags: readonly string[], header: TagHeader): string {
  let value = tags[0] ?? '';
  for (const tag of tags.slice(1)) {
    const next = `${value}${header.separator}${tag}`;
    if (Buffer.byteLength(next) > header.maxBytes) break;
    value = next;
  }
  return value;
}

import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import { ConveyorError } from '../errors.ts';
import type { Principal } from '../tenancy/principal.ts';
import type { AccessService, AccessVerdict } from './access.ts';
import type { Representation } from './lookup.ts';

/**
 * Who may see a representation, and what the others are told: the origin's gate (origin.ts). Public
 * content needs no check; private content opens to a grant of it (token, signed URL, the owning tenant's
 * key). Everyone else gets the 404 of an id that does not exist, and only the holder of a grant that has
 * lapsed learns why (403).
 */

/**
 * The answer for an id that does not exist, and for private content the caller may not see: one error,
 * so that the two responses are the same byte for byte (README: a tenant cannot detect another's assets).
 * `cacheControl` is the negative-caching policy; absent, the problem's own `no-store` stands.
 */
function noSuchContent(cacheControl: string | undefined): ConveyorError {
  return new ConveyorError('not_found', 'No such asset or version', {
    ...(cacheControl ? { headers: { 'cache-control': cacheControl } } : {}),
  });
}

/** Why a grant that once opened the content no longer does (the 403's detail). */
const LAPSED: Record<Exclude<AccessVerdict, 'granted' | 'none'>, string> = {
  expired: 'The access token or signed URL has expired',
  revoked: 'The access token has been revoked',
};

/** Credentials a delivery URL may carry in its query: an access token, or a signature (signed-url.ts). */
export interface DeliveryQuery {
  token?: string;
  exp?: string;
  kid?: string;
  sig?: string;
  /** The prefix a prefix signature covers (signed-url.ts): HLS ladders. */
  scope?: string;
}

/** One GET or HEAD of a delivery URL, as the origin needs it. */
export interface OriginRequest {
  method: string;
  /** The path exactly as the client sent it, without the query: signatures cover it byte for byte. */
  path: string;
  headers: IncomingHttpHeaders;
  requestId: string;
  /** Response headers decided before the origin was called (X-Request-Id, RateLimit-*, CORS). */
  responseHeaders: OutgoingHttpHeaders;
  query: DeliveryQuery;
  /** Who the Authorization header names, if anyone; asked only for private content. */
  principal(): Promise<Principal | null>;
}

/**
 * The 404 for `request`: a shared cache may keep it (negative caching, `negative` the Cache-Control)
 * unless the request carried an Authorization header, whose answer is that caller's alone (RFC 9111 §3.5
 * lets a shared cache store an answer to an authorized request once it says s-maxage).
 */
export function missing(request: Pick<OriginRequest, 'headers'>, negative: string): ConveyorError {
  return noSuchContent(request.headers.authorization === undefined ? negative : undefined);
}

/** Passes when the request holds a grant of `rep`; throws the 404 (`missing`) or a lapsed grant's 403. */
export async function authorize(
  access: AccessService,
  rep: Representation,
  request: OriginRequest,
  negative: string,
): Promise<void> {
  const { query } = request;
  const principal = request.headers.authorization ? await request.principal().catch(() => null) : null;
  const verdict = await access.verdict({ id: rep.assetId, tenantId: rep.tenantId }, request.path, {
    token: query.token,
    signature: query.sig === undefined ? undefined : query,
    principal,
  });
  if (verdict === 'granted') return;
  // No credential, an unknown or forged one, another asset's or another tenant's: the answer to an id
  // that does not exist, so that nobody learns that private content is there.
  if (verdict === 'none') throw missing(request, negative);
  // A grant of this very content that has lapsed: its holder had access, so may be told why no longer.
  throw new ConveyorError('access_denied', LAPSED[verdict], {
    headers: { 'cache-control': 'private, no-store' },
  });
}

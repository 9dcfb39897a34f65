import { isIPv4 } from 'node:net';
import { getSignedCookies, getSignedUrl } from '@aws-sdk/cloudfront-signer';
import { CdnError, type SignedAccess, type SignRequest } from '../provider.ts';

/** The key CloudFront verifies signatures with: the public key's id in a key group, and its private half. */
export interface CloudFrontSigningKey {
  keyPairId: string;
  /** PEM text of the RSA private key. */
  privateKey: string;
}

/**
 * The custom policy for a request, as the CloudFront Developer Guide ("Create a signed URL using a custom
 * policy") writes it: one statement, "You can include only one statement", with `DateLessThan` "the
 * only required parameter in the Condition section" and an optional `IpAddress`. For a prefix the
 * resource ends in `*`, "the wildcard character that matches zero or more characters", so one policy
 * covers every file of an HLS folder.
 */
export function customPolicy(request: SignRequest): string {
  const url = canonicalUrl(request.url);
  const condition: Record<string, unknown> = {
    DateLessThan: { 'AWS:EpochTime': epochSeconds(request.expiresAt) },
  };
  if (request.clientIp !== undefined) condition.IpAddress = { 'AWS:SourceIp': sourceIp(request.clientIp) };
  const resource = request.prefix ? `${folderOf(url)}*` : url;
  return JSON.stringify({ Statement: [{ Resource: resource, Condition: condition }] });
}

/**
 * A signed URL, with signed cookies when the policy is a custom one.
 *
 * One URL without a client address gets a canned policy (`Expires=`, the shortest URL CloudFront takes).
 * A prefix or a client address needs a custom policy (`Policy=`); its cookies (CloudFront-Policy,
 * -Signature, -Key-Pair-Id) carry the same policy to every request of a player, which is what lets the
 * segments of an HLS folder through: relative segment URLs in a playlist do not inherit a query.
 */
export function signCloudFront(
  provider: string,
  key: CloudFrontSigningKey,
  request: SignRequest,
): SignedAccess {
  const credentials = { keyPairId: key.keyPairId, privateKey: key.privateKey };
  try {
    const url = canonicalUrl(request.url);
    if (!request.prefix && request.clientIp === undefined) {
      // Whole seconds, rounded down: the signer would round to the nearest second, and a link must not
      // outlive the time asked for.
      const dateLessThan = new Date(epochSeconds(request.expiresAt) * 1000);
      return { url: getSignedUrl({ ...credentials, url, dateLessThan }) };
    }
    const policy = customPolicy(request);
    const signedUrl = getSignedUrl({ ...credentials, url, policy });
    const signed = getSignedCookies({ ...credentials, policy });
    const cookies: Record<string, string> = {
      'CloudFront-Policy': signed['CloudFront-Policy']!,
      'CloudFront-Signature': signed['CloudFront-Signature'],
      'CloudFront-Key-Pair-Id': signed['CloudFront-Key-Pair-Id'],
    };
    return { url: signedUrl, cookies };
  } catch (error) {
    if (error instanceof CdnError) throw error;
    // The signer's messages name the input, never the key.
    throw new CdnError(provider, `cannot sign ${request.url}: ${(error as Error).message}`, {
      retryable: false,
      cause: error,
    });
  }
}

function epochSeconds(date: Date): number {
  return Math.floor(date.getTime() / 1000);
}

/** The folder a prefix request names: the URL itself when it ends in `/`, else the folder of its file. */
function folderOf(url: string): string {
  const parsed = new URL(url);
  const path = parsed.pathname.endsWith('/')
    ? parsed.pathname
    : parsed.pathname.slice(0, parsed.pathname.lastIndexOf('/') + 1);
  return `${parsed.origin}${path}`;
}

/**
 * "To allow access from a single IP address, you specify: "IPv4 IP address/32"", and "IP addresses in
 * IPv6 format ... are not supported" (CloudFront Developer Guide, values of a custom policy).
 */
function sourceIp(clientIp: string): string {
  if (!isIPv4(clientIp))
    throw new RangeError(`CloudFront policies restrict IPv4 addresses only, not ${clientIp}`);
  return `${clientIp}/32`;
}

/**
 * The URL as CloudFront compares it with a policy's resource: each path segment percent-encoded the way
 * `encodeURIComponent` does. The signer re-encodes the path of the URL it is given in that form, so the
 * resource of a custom policy is built from the same form, and a URL already in it passes through unchanged.
 */
export function canonicalUrl(url: string): string {
  const parsed = new URL(url);
  const path = parsed.pathname
    .split('/')
    .map((segment) => encodeURIComponent(safeDecode(segment)))
    .join('/');
  return `${parsed.origin}${path}${parsed.search}`;
}

function safeDecode(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}

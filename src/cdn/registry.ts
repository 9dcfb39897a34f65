import type {
  BunnyEntry,
  CdnKind,
  CdnProviderEntry,
  CloudflareEntry,
  FastlyEntry,
  VarnishEntry,
} from '../config/cdn-settings.ts';
import { type Config, ConfigError } from '../config/config.ts';
import type { CdnProvider, TagHeader } from './provider.ts';
import { BUNNY_TAG_HEADER, BunnyProvider } from './providers/bunny.ts';
import { CLOUDFLARE_TAG_HEADER, CloudflareProvider } from './providers/cloudflare.ts';
import { FASTLY_TAG_HEADER, FastlyProvider } from './providers/fastly.ts';
import { VARNISH_TAG_HEADER, VarnishProvider } from './providers/varnish.ts';

/**
 * The configured CDN providers (CONVEYOR_CDN_PROVIDERS), built. The four HTTP providers are built here;
 * CloudFront's, which needs the AWS SDK, is handed in by the module that builds it (`factories.cloudfront`),
 * so that a process without it neither loads the SDK nor starts with a CloudFront entry it cannot serve.
 */

type EntryOf<K extends CdnKind> = Extract<CdnProviderEntry, { kind: K }>;

export type ProviderFactories = { [K in CdnKind]?: (entry: EntryOf<K>) => CdnProvider };

export const httpProviderFactories = {
  cloudflare: (entry: CloudflareEntry) => new CloudflareProvider(entry),
  bunny: (entry: BunnyEntry) => new BunnyProvider(entry),
  fastly: (entry: FastlyEntry) => new FastlyProvider(entry),
  varnish: (entry: VarnishEntry) => new VarnishProvider(entry),
} satisfies ProviderFactories;

/** One provider per entry, in order; `factories` add kinds (cloudfront) or replace the built-in ones. */
export function createProviders(
  config: Pick<Config, 'cdnProviders'>,
  factories: ProviderFactories = {},
): CdnProvider[] {
  const all: ProviderFactories = { ...httpProviderFactories, ...factories };
  const providers: CdnProvider[] = [];
  const problems: string[] = [];
  for (const entry of config.cdnProviders ?? []) {
    const factory = all[entry.kind] as ((entry: CdnProviderEntry) => CdnProvider) | undefined;
    if (!factory) {
      problems.push(
        `CONVEYOR_CDN_PROVIDERS: ${JSON.stringify(entry.name)} is a ${entry.kind} provider, which is not built in this process`,
      );
      continue;
    }
    providers.push(factory(entry));
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return providers;
}

/** The header each kind's edge reads cache tags from; CloudFront reads none. */
export const TAG_HEADERS: Readonly<Record<CdnKind, TagHeader | null>> = {
  cloudflare: CLOUDFLARE_TAG_HEADER,
  bunny: BUNNY_TAG_HEADER,
  fastly: FASTLY_TAG_HEADER,
  varnish: VARNISH_TAG_HEADER,
  cloudfront: null,
};

/** The tag headers delivery adds for the configured providers (without building them). */
export function tagHeadersOf(config: Pick<Config, 'cdnProviders'>): TagHeader[] {
  return (config.cdnProviders ?? []).flatMap((entry) => TAG_HEADERS[entry.kind] ?? []);
}

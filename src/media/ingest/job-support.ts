import { ConveyorError } from '../../errors.ts';
import { type JobContext, PermanentJobError } from '../../jobs/types.ts';
import type { Principal } from '../../tenancy/principal.ts';
import { YtdlpError } from '../video/ytdlp-errors.ts';
import { DownloadError } from './download-errors.ts';
import { bareHost } from './ssrf.ts';

/** What the ingest job types (ingest.fetch, ingest.site, ingest.playlist) share. */

/** The breaker key (and rate scope) of a URL: its host, or none when it does not parse. */
export function hostKey(url: string): string | undefined {
  try {
    return `host:${bareHost(new URL(url)).toLowerCase()}`;
  } catch {
    return undefined;
  }
}

/** Jobs act for their tenant with the rights of an editor; the audit log names the job. */
export function jobPrincipal(context: JobContext): Principal {
  return {
    tenantId: context.job.tenantId,
    role: 'editor',
    operator: false,
    keyId: null,
    actor: `job:${context.job.id}`,
  };
}

/**
 * A failure retrying cannot mend (a refused address, a 404, too large, a live stream) sends the job
 * straight to dead with its catalog code; a retryable one keeps its code for the attempt's record.
 */
export function permanentWhenFinal(error: unknown): never {
  if ((error instanceof DownloadError || error instanceof YtdlpError) && !error.retryable) {
    throw new PermanentJobError(error.message, error.code);
  }
  if (error instanceof ConveyorError && error.status < 500 && error.status !== 429) {
    throw new PermanentJobError(error.message, error.code);
  }
  throw error;
}

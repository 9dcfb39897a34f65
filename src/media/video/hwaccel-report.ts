/**
 * What the encoder detection shows outside the worker: the `encoders` component of /api/v1/health. The
 * metrics side is in src/ops/metrics.ts (`observeEncoders`, `countEncodeFallback`).
 */
import type { ComponentHealth, EncoderSummary } from '../../ops/health.ts';
import type { EncoderReport } from './hwaccel.ts';

/** One candidate as conveyor_video_encoder_available shows it (Metrics.observeEncoders). */
export interface EncoderAvailability {
  encoder: string;
  family: string;
  codec: string;
  available: boolean;
}

/** The candidates of a detection for the metrics: proven ones available, failed ones not. */
export function encoderAvailability(report: EncoderReport): EncoderAvailability[] {
  return [
    ...report.proven.map((c) => ({ encoder: c.encoder, family: c.family, codec: c.codec, available: true })),
    ...report.failed.map((c) => ({ encoder: c.encoder, family: c.family, codec: c.codec, available: false })),
  ];
}

/**
 * The `encoders` component of /api/v1/health: healthy while H.264, the ladder's default codec, has a
 * proven encoder (on a GPU-less machine that is libx264, and the refused hardware encoders are the
 * normal case, not a fault); unhealthy when nothing can encode it.
 */
export function encoderHealth(report: EncoderReport): ComponentHealth {
  const best = Object.fromEntries(
    Object.entries(report.best).map(([codec, candidate]) => [codec, candidate.encoder]),
  ) as EncoderSummary['best'];
  const named = Object.entries(best).map(([codec, encoder]) => `${codec} ${encoder}`);
  const hardwareRefused = report.failed.filter((f) => f.family !== 'cpu').length;
  const detail =
    report.listingError ??
    [
      named.length > 0 ? `best: ${named.join(', ')}` : 'no proven encoder',
      ...(hardwareRefused > 0 ? [`${hardwareRefused} listed hardware encoders failed their trial`] : []),
      ...(report.best.h264 ? [] : ['no H.264 encoder works']),
    ].join('; ');
  const encoders: EncoderSummary = {
    mode: report.mode,
    source: report.source,
    detectedAt: report.detectedAt,
    proven: report.proven.map((c) => c.encoder),
    failed: report.failed.map((f) => ({ encoder: f.encoder, reason: f.reason })),
    best,
  };
  return {
    name: 'encoders',
    kind: 'encoders' as const,
    status: report.best.h264 ? ('healthy' as const) : ('unhealthy' as const),
    successRate: null,
    detail,
    encoders,
  };
}

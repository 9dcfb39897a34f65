import { childEnv } from '../test/helpers/child.ts';

/**
 * The environment a benchmark starts `conveyor serve` with: this process's environment without its own
 * CONVEYOR_* settings (test/helpers/child.ts), loopback only, quiet logs, and the API rate limits and
 * garbage collection off, so that only the measured work runs; `settings` add to it or override it.
 */
export function benchServerEnv(
  server: { dataDir: string; port: number; adminKey: string },
  settings: Record<string, string> = {},
): NodeJS.ProcessEnv {
  return childEnv({
    CONVEYOR_DATA_DIR: server.dataDir,
    CONVEYOR_HOST: '127.0.0.1',
    CONVEYOR_PORT: String(server.port),
    CONVEYOR_PUBLIC_URL: `http://127.0.0.1:${server.port}`,
    CONVEYOR_ADMIN_KEY: server.adminKey,
    CONVEYOR_LOG_LEVEL: 'warn',
    CONVEYOR_RATE_LIMIT_PER_KEY: '0',
    CONVEYOR_RATE_LIMIT_PER_ADDRESS: '0',
    CONVEYOR_GC_INTERVAL_SECONDS: '0',
    ...settings,
  });
}

import { isAbsolute, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Config } from '../config/config.ts';
import { JobRegistry, registerBuiltinTypes } from './registry.ts';

/**
 * The job types of this installation: the built-in ones plus those of the modules named by
 * `CONVEYOR_JOB_MODULES`. A module exports `register(registry)`, which registers its types. Every
 * process that enqueues or runs jobs (serve, worker) loads the same list, so they agree on the types.
 */
export async function buildRegistry(config: Config): Promise<JobRegistry> {
  const registry = registerBuiltinTypes(new JobRegistry());
  for (const name of config.jobModules ?? []) {
    const path = isAbsolute(name) || name.startsWith('.') ? pathToFileURL(resolve(name)).href : name;
    const module = (await import(path)) as { register?: (registry: JobRegistry) => unknown };
    if (typeof module.register !== 'function') {
      throw new Error(`job module ${name} does not export register(registry)`);
    }
    await module.register(registry);
  }
  return registry;
}

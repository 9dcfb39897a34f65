/** Units the settings tables are written in (bytes, seconds). */
export const KiB = 1024;
export const MiB = 1024 * KiB;
export const GiB = 1024 * MiB;
export const DAY = 86_400;

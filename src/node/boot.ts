// The kernel's boot ID, which every attachment record keeps (releaseOnReboot):
// /proc/sys/kernel/random/boot_id, or the file PODCIDR_IPAM_BOOT_ID_FILE names
// (for tests, which fake a reboot by changing it). "" when it cannot be read.
import { readFileSync } from "node:fs";

export const BOOT_ID_FILE = "/proc/sys/kernel/random/boot_id";

let cached: string | undefined;

export function bootId(): string {
  if (cached !== undefined) return cached;
  try {
    cached = readFileSync(process.env.PODCIDR_IPAM_BOOT_ID_FILE || BOOT_ID_FILE, "utf8").trim();
  } catch {
    cached = "";
  }
  return cached;
}

// What a CNI call caches about the process it runs in: its pid namespace and start
// time, the boot ID, the queue tickets' prefix. The standalone build runs training
// calls before Node takes its startup snapshot (scripts/snapshot-main.mjs); without
// this, those caches would describe the build process in every call made from the
// snapshot: lock owner files naming the wrong start time, releaseOnReboot seeing a
// reboot at every call. forget() clears them; the build calls it after training.
import { forgetBootId } from "./node/boot.js";
import { forgetPrefix } from "./store/lock-wait.js";
import { forgetSelf } from "./store/proc.js";

export function forget(): void {
  forgetSelf();
  forgetBootId();
  forgetPrefix();
}

import type { Handlers } from "../cni/dispatch.js";
import { add } from "./add.js";
import { check } from "./check.js";
import { del } from "./del.js";
import { gc } from "./gc.js";
import { status } from "./status.js";

export const handlers: Handlers = { ADD: add, DEL: del, CHECK: check, GC: gc, STATUS: status };

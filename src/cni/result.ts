// Shape an IPAM result for the config's cniVersion (SPEC section 5, and the
// conversions of pkg/types/{020,040,100}). IPAM results carry no interfaces.
import { addressAt, parseCidr, parseIp } from "../ipam/cidr.js";
import type { IpamConfig, Route } from "../ipam/config.js";
import { type CniVersion, compareVersions } from "./version.js";

export interface IpamResult {
  readonly ips: readonly { readonly family: 4 | 6; readonly address: string; readonly gateway?: string }[];
  readonly routes: readonly Route[];
  readonly dns?: IpamConfig["dns"];
}

export function formatResult(r: IpamResult, version: CniVersion): Record<string, unknown> {
  if (compareVersions(version, "0.3.0") < 0) {
    const out: Record<string, unknown> = { cniVersion: version };
    for (const family of [4, 6] as const) {
      const ip = r.ips.find((i) => i.family === family);
      if (!ip) continue;
      const routes = r.routes.filter((rt) => familyOf(rt.dst) === family).map(basicRoute);
      out[`ip${family}`] = { ip: ip.address, ...(ip.gateway ? { gateway: ip.gateway } : {}), ...(routes.length ? { routes } : {}) };
    }
    if (r.dns && Object.keys(r.dns).length) out.dns = r.dns;
    return out;
  }
  const legacy = compareVersions(version, "1.0.0") < 0;
  const ips = r.ips.map((ip) => ({
    ...(legacy ? { version: String(ip.family) } : {}),
    address: ip.address,
    ...(ip.gateway ? { gateway: ip.gateway } : {}),
  }));
  const routes = version === "1.1.0" ? r.routes : r.routes.map(basicRoute);
  const out: Record<string, unknown> = { cniVersion: version, ips };
  if (routes.length) out.routes = routes;
  if (r.dns && Object.keys(r.dns).length) out.dns = r.dns;
  else if (legacy) out.dns = {};
  return out;
}

/** The IPAM result for the addresses an attachment holds (each with the podCIDR it came from). */
export function resultFor(held: readonly { readonly cidr: string; readonly address: string }[], ipam: IpamConfig): IpamResult {
  const ips = held.map((h) => {
    const p = parseCidr(h.cidr);
    const ip = parseIp(h.address)!;
    const cidr = p.ok ? p.cidr : null;
    return {
      family: ip.family,
      address: `${h.address}/${cidr ? cidr.prefix : ip.family === 4 ? 32 : 128}`,
      ...(ipam.gateway && cidr ? { gateway: addressAt(cidr, 0) } : {}),
    };
  });
  const fams = new Set(ips.map((i) => i.family));
  const routes = ipam.routes.filter((rt) => fams.has(familyOf(rt.dst)));
  return { ips, routes, ...(ipam.dns ? { dns: ipam.dns } : {}) };
}

export function familyOf(cidrOrIp: string): 4 | 6 {
  return cidrOrIp.includes(":") ? 6 : 4;
}

// --- internal ---

function basicRoute(rt: Route): Route {
  return rt.gw === undefined ? { dst: rt.dst } : { dst: rt.dst, gw: rt.gw };
}

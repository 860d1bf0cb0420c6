// The SVG chart of npm run bench: median ADD+DEL cycle against live allocations,
// one line per plugin, on a log scale (host-local spans 8 ms to over a second).
export function chart(series, floor, sizes) {
  const W = 680,
    H = 380,
    L = 60,
    R = 200,
    T = 34,
    B = 52;
  const all = series.flatMap((s) => s.pts.map((p) => p[1]));
  const lo = Math.min(...all, 2 * floor) / 1.5,
    hi = Math.max(...all, 2 * floor) * 1.5;
  const x = (i) => L + (i * (W - L - R)) / Math.max(1, sizes.length - 1);
  const y = (v) => H - B - ((Math.log10(v) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo))) * (H - T - B);
  const colors = ["#1f77b4", "#2ca02c", "#d62728", "#9467bd"];
  let s = `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">\n<rect width="100%" height="100%" fill="white"/>\n`;
  s += `<text x="${L}" y="20" font-size="14">ADD+DEL cycle, median ms (log scale), against live allocations</text>\n`;
  for (const v of [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000]) {
    if (v < lo || v > hi) continue;
    s += `<line x1="${L}" x2="${W - R}" y1="${y(v)}" y2="${y(v)}" stroke="#eee"/><text x="${L - 8}" y="${y(v) + 4}" text-anchor="end">${v}</text>\n`;
  }
  for (const [i, n] of sizes.entries()) s += `<text x="${x(i)}" y="${H - B + 18}" text-anchor="middle">${n.toLocaleString("en")}</text>\n`;
  s += `<text x="${(L + W - R) / 2}" y="${H - 12}" text-anchor="middle">live allocations on the network</text>\n`;
  s += `<line x1="${L}" x2="${W - R}" y1="${y(2 * floor)}" y2="${y(2 * floor)}" stroke="#999" stroke-dasharray="4 3"/><text x="${W - R + 6}" y="${y(2 * floor) + 4}" fill="#666">2 x node -e 0 (floor)</text>\n`;
  const labels = [];
  series.forEach((ser, k) => {
    const c = colors[k % colors.length];
    s += `<polyline fill="none" stroke="${c}" stroke-width="2" points="${ser.pts.map((p, i) => `${x(i)},${y(p[1])}`).join(" ")}"/>\n`;
    for (const [i, p] of ser.pts.entries()) s += `<circle cx="${x(i)}" cy="${y(p[1])}" r="3" fill="${c}"/>\n`;
    // Keep the end labels apart.
    let ly = y(ser.pts[ser.pts.length - 1][1]) + 4;
    while (labels.some((l) => Math.abs(l - ly) < 14)) ly += 14;
    labels.push(ly);
    s += `<text x="${W - R + 6}" y="${ly}" fill="${c}">${ser.name}</text>\n`;
  });
  return `${s}</svg>\n`;
}

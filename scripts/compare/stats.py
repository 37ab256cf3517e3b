"""Statistics over the result rows (CSV dicts): grouping, min / median /
max, paired per-round ratios, and whether a SIPp step held."""

import statistics


def num(x):
    return float(x) if x not in ("", None) else None


def by(rows, x, key="target"):
    """{row[key]: {x value: [rows]}}: per target (or per steering mode),
    the rounds of each step."""
    out = {}
    for row in rows:
        out.setdefault(row[key], {}).setdefault(float(row[x]), []).append(row)
    return out


def stat_rows(g, xs, columns):
    """Markdown table rows, one per (x, target): x, the target, and
    min / median / max over the rounds of each (column, format)."""
    out = []
    for x in xs:
        for t in g:
            rows = g[t].get(x)
            if rows:
                cells = [fmt3([num(r[c]) for r in rows], f) for c, f in columns]
                out.append(f"| {x:.0f} | {t} | " + " | ".join(cells) + " |")
    return out


def paired_ratio(rows_a, rows_b, col):
    """Per-round ratios b/a of column COL (rounds matched by number)."""
    a = {r["round"]: num(r[col]) for r in rows_a}
    b = {r["round"]: num(r[col]) for r in rows_b}
    return [b[k] / a[k] for k in a if k in b and a[k] and b[k] is not None]


def fmt3(xs, f="{:.2f}"):
    xs = [x for x in xs if x is not None]
    if not xs:
        return "-"
    return " / ".join(f.format(v) for v in (min(xs), statistics.median(xs), max(xs)))


def call_step_held(rows, offered_cps, planned):
    """A SIPp step held when, over its rounds (median), at most 0.1% of the
    planned calls failed and the achieved rate was within 20% of the offer."""
    failed = statistics.median(float(x["failed"]) for x in rows)
    achieved = statistics.median(float(x["achieved_cps"]) for x in rows)
    return failed <= planned / 1000 and achieved >= offered_cps / 1.2

"""Turn the raw measurements of a benchmark run into tables, files and a chart.

Input is the results dictionary that bench/run.py builds (and saves as
results.json): ``meta`` (machine, allocators, workloads), ``runs`` (one
record per traced or timed run) and ``failures``.  Everything here is a pure
function of that dictionary, so tests/test_bench.py can check the reports
from a fixed fixture (bench/fixtures/sample-results.json) without running
anything, and a saved results.json can be re-rendered with
``python bench/report.py results.json OUT_DIR``.

Outputs: the terminal table (ratios to glibc, geometric means, best marked),
results.json, measurements.csv (every run), summary.csv (one row per
workload and allocator), chart.png and REPORT.md.
"""

import csv
import json
import math
import statistics
import sys
from pathlib import Path

#: Per metric: key, title, summary field, unit kind, explanation.
METRICS = [
    ("time", "Wall time", "time_median_s", "s",
     "median of the untraced runs; lower is better"),
    ("rss", "Peak RSS", "rss_median_bytes", "bytes",
     "ru_maxrss of the workload (largest process), median of the untraced runs; "
     "the fair memory comparison across all allocators"),
    ("brk", "Peak brk", "peak_brk", "bytes",
     "highest program break above the process's first break, exact (strace), "
     "largest process; allocators that never call brk show 'no brk' and are not ranked"),
    ("held", "Peak held", "peak_held", "bytes",
     "program break extent + anonymous private mappings, exact (strace), largest "
     "process; counts reserved but untouched address space, so it overstates "
     "allocators that reserve large regions"),
]

SUMMARY_FIELDS = [
    "workload", "group", "allocator", "status", "reason",
    "time_median_s", "time_min_s", "time_max_s", "time_reps",
    "user_median_s", "sys_median_s",
    "rss_median_bytes", "rss_min_bytes", "rss_max_bytes",
    "peak_brk", "peak_brk_command", "peak_brk_main", "peak_held", "peak_held_command",
    "peak_held_main", "processes",
    "myalloc_brk_extent_peak", "myalloc_held_bytes_peak", "myalloc_brk_diff",
    "myalloc_malloc_calls", "myalloc_brk_grow_calls", "myalloc_mmap_fallback_calls",
]

RUN_FIELDS = [
    "workload", "allocator", "phase", "rep", "ok", "status", "error",
    "wall_s", "user_s", "sys_s", "maxrss_kib", "peak_brk", "peak_brk_main",
    "peak_brk_command", "peak_held", "peak_held_main", "peak_held_command", "processes",
    "output_sha256", "myalloc_brk_extent_peak", "myalloc_held_bytes_peak",
    "myalloc_malloc_calls", "myalloc_brk_grow_calls", "myalloc_mmap_fallback_calls",
]

STAT_KEYS = ("brk_extent_peak", "held_bytes_peak", "malloc_calls", "brk_grow_calls",
             "mmap_fallback_calls")


# --------------------------------------------------------------------------
# summary
# --------------------------------------------------------------------------

def allocator_names(results):
    return [a["name"] for a in results["meta"]["allocators"]]


def workload_names(results):
    return [w["name"] for w in results["meta"]["workloads"]]


def summarize(results):
    """One dict per (workload, allocator) with the figures the tables use."""
    groups = {w["name"]: w.get("group", "") for w in results["meta"]["workloads"]}
    failed = {(f["workload"], f["allocator"]): f["reason"] for f in results.get("failures", [])}
    by_pair = {}
    for run in results["runs"]:
        by_pair.setdefault((run["workload"], run["allocator"]), []).append(run)
    rows = []
    for wname in workload_names(results):
        for aname in allocator_names(results):
            runs = by_pair.get((wname, aname), [])
            row = {k: None for k in SUMMARY_FIELDS}
            row.update(workload=wname, group=groups[wname], allocator=aname)
            if (wname, aname) in failed:
                row.update(status="FAIL", reason=failed[(wname, aname)])
                rows.append(row)
                continue
            timed = [r for r in runs if r["phase"] == "time" and r["ok"]]
            traced = [r for r in runs if r["phase"] == "trace" and r["ok"]]
            if not timed and not traced:
                row.update(status="missing", reason="not measured")
                rows.append(row)
                continue
            row["status"] = "ok"
            if timed:
                walls = [r["wall_s"] for r in timed]
                rss = [r["maxrss_kib"] * 1024 for r in timed]
                row.update(time_median_s=statistics.median(walls), time_min_s=min(walls),
                           time_max_s=max(walls), time_reps=len(walls),
                           user_median_s=statistics.median(r["user_s"] for r in timed),
                           sys_median_s=statistics.median(r["sys_s"] for r in timed),
                           rss_median_bytes=int(statistics.median(rss)),
                           rss_min_bytes=min(rss), rss_max_bytes=max(rss))
            if traced:
                t = traced[0]
                for key in ("peak_brk", "peak_brk_command", "peak_brk_main", "peak_held",
                            "peak_held_command", "peak_held_main", "processes"):
                    row[key] = t.get(key)
                stats = t.get("myalloc_stats") or {}
                if stats:
                    for key in STAT_KEYS:
                        row["myalloc_" + key] = stats.get(key)
                    if stats.get("brk_extent_peak") is not None and t.get("peak_brk_main") is not None:
                        row["myalloc_brk_diff"] = stats["brk_extent_peak"] - t["peak_brk_main"]
            rows.append(row)
    return rows


def geomean(values):
    values = [v for v in values if v and v > 0]
    if not values:
        return None
    return math.exp(sum(math.log(v) for v in values) / len(values))


def metric_table(summary, workloads, allocators, field):
    """Rows of {workload, values{alloc: value|None|'FAIL'}, ratios{alloc}, best}
    plus a geometric-mean row.  A zero value is a real measurement (no brk)
    but is neither ranked nor put into a geometric mean."""
    index = {(r["workload"], r["allocator"]): r for r in summary}
    rows = []
    for w in workloads:
        values, ratios = {}, {}
        for a in allocators:
            r = index.get((w, a))
            if r is None or r["status"] == "missing":
                values[a] = None
            elif r["status"] == "FAIL":
                values[a] = "FAIL"
            else:
                values[a] = r.get(field)
        base = values.get("glibc")
        for a in allocators:
            v = values[a]
            ok = isinstance(v, (int, float)) and isinstance(base, (int, float)) and base > 0
            ratios[a] = v / base if ok else None
        ranked = [(v, a) for a, v in values.items() if isinstance(v, (int, float)) and v > 0]
        best = min(ranked)[1] if ranked else None
        rows.append({"workload": w, "values": values, "ratios": ratios, "best": best})
    gm, counts = {}, {}
    for a in allocators:
        pairs = [r["ratios"][a] for r in rows if r["ratios"][a]]
        gm[a] = geomean(pairs)
        counts[a] = len(pairs)
    ranked = [(v, a) for a, v in gm.items() if v]
    return {"rows": rows, "geomean": gm, "geomean_counts": counts,
            "geomean_best": min(ranked)[1] if ranked else None, "n": len(workloads)}


# --------------------------------------------------------------------------
# formatting
# --------------------------------------------------------------------------

def fmt_bytes(n):
    if n is None:
        return "-"
    if n == 0:
        return "0"
    if n >= 1 << 30:
        return f"{n / (1 << 30):.2f} GiB"
    if n >= 1 << 20:
        return f"{n / (1 << 20):.1f} MiB"
    return f"{n / 1024:.0f} KiB"


def fmt_value(v, unit):
    if v is None:
        return "-"
    if v == "FAIL":
        return "FAIL"
    if unit == "s":
        return f"{v:.3f} s" if v < 10 else f"{v:.2f} s"
    return fmt_bytes(v)


def fmt_ratio(r):
    return "-" if r is None else f"{r:.2f}"


def _cells(table, allocators, unit, best_mark):
    """Cell strings per row: glibc absolute, others ratio (or FAIL/no brk)."""
    out = []
    for row in table["rows"]:
        cells = []
        for a in allocators:
            v = row["values"][a]
            if a == "glibc":
                text = fmt_value(v, unit)
            elif v == "FAIL":
                text = "FAIL"
            elif v == 0 and unit == "bytes":
                text = "no brk" if table.get("key") == "brk" else "0"
            else:
                text = fmt_ratio(row["ratios"][a])
            cells.append(best_mark(text) if row["best"] == a else text)
        out.append((row["workload"], cells))
    gm_cells = []
    for a in allocators:
        g = table["geomean"][a]
        if g is None:
            text = "-"
        else:
            text = f"{g:.2f}"
            if table["geomean_counts"][a] < table["n"]:
                text += f" ({table['geomean_counts'][a]}/{table['n']})"
        gm_cells.append(best_mark(text) if table["geomean_best"] == a else text)
    out.append(("geometric mean", gm_cells))
    return out


def build_tables(results, summary=None):
    summary = summary if summary is not None else summarize(results)
    workloads, allocators = workload_names(results), allocator_names(results)
    tables = []
    for key, title, field, unit, note in METRICS:
        t = metric_table(summary, workloads, allocators, field)
        t.update(key=key, title=title, field=field, unit=unit, note=note)
        tables.append(t)
    return tables


def terminal_report(results, summary=None):
    """The tables printed at the end of a run (plain text, fixed width)."""
    summary = summary if summary is not None else summarize(results)
    allocators = allocator_names(results)
    reps = results["meta"].get("reps")
    lines = []
    for t in build_tables(results, summary):
        lines.append("")
        lines.append(f"{t['title']} -- glibc absolute, others ratio to glibc "
                     f"(lower is better, * = best)")
        lines.append(f"  {t['note']}" + (f"; {reps} repetition(s)" if t["unit"] == "s" and reps else ""))
        rows = _cells(t, allocators, t["unit"], lambda s: s + "*")
        w0 = max(len("workload"), *(len(name) for name, _ in rows))
        widths = [max(len(a), *(len(c[i]) for _, c in rows)) for i, a in enumerate(allocators)]
        lines.append("  " + "workload".ljust(w0) + "  " +
                     "  ".join(a.rjust(w) for a, w in zip(allocators, widths)))
        for i, (name, cells) in enumerate(rows):
            if i == len(rows) - 1:
                lines.append("  " + "-" * (w0 + sum(widths) + 2 * len(widths)))
            lines.append("  " + name.ljust(w0) + "  " +
                         "  ".join(c.rjust(w) for c, w in zip(cells, widths)))
    check = crosscheck_rows(summary)
    if check:
        lines.append("")
        lines.append("myalloc statistics vs traced peak brk (top process)")
        worst = max(abs(r["diff"]) for r in check)
        single = [r for r in check if r["processes"] == 1]
        agree = sum(1 for r in single if r["diff"] == 0)
        lines.append(f"  single-process workloads agreeing exactly: {agree}/{len(single)}; "
                     f"largest difference over all: {worst} bytes")
        for r in check:
            if r["diff"] != 0:
                lines.append(f"  {r['workload']}: stats {r['stats']} traced {r['traced']} "
                             f"diff {r['diff']:+d} bytes ({r['processes']} processes)")
    fails = results.get("failures", [])
    if fails:
        lines.append("")
        lines.append(f"FAILURES ({len(fails)}): not timed")
        for f in fails:
            lines.append(f"  {f['workload']} under {f['allocator']}: {f['reason']}")
    return "\n".join(lines) + "\n"


def crosscheck_rows(summary):
    out = []
    for r in summary:
        if r["status"] == "ok" and r.get("myalloc_brk_extent_peak") is not None \
                and r.get("peak_brk_main") is not None:
            out.append({"workload": r["workload"], "allocator": r["allocator"],
                        "stats": r["myalloc_brk_extent_peak"], "traced": r["peak_brk_main"],
                        "diff": r["myalloc_brk_diff"], "processes": r["processes"],
                        "held": r["myalloc_held_bytes_peak"],
                        "malloc_calls": r["myalloc_malloc_calls"],
                        "mmap_fallback_calls": r["myalloc_mmap_fallback_calls"]})
    return out


# --------------------------------------------------------------------------
# files
# --------------------------------------------------------------------------

def write_json(results, summary, path):
    data = dict(results)
    data["summary"] = summary
    Path(path).write_text(json.dumps(data, indent=1, sort_keys=False) + "\n")


def _flat_run(run):
    row = {k: run.get(k) for k in RUN_FIELDS}
    stats = run.get("myalloc_stats") or {}
    for key in STAT_KEYS:
        row["myalloc_" + key] = stats.get(key)
    return row


def write_csv(results, summary, folder):
    with open(Path(folder) / "measurements.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=RUN_FIELDS)
        w.writeheader()
        for run in results["runs"]:
            w.writerow(_flat_run(run))
    with open(Path(folder) / "summary.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=SUMMARY_FIELDS)
        w.writeheader()
        for row in summary:
            w.writerow(row)


#: Fixed colours per allocator so charts of different runs compare at a glance.
COLORS = {"glibc": "#7f7f7f", "myalloc": "#d62728", "jemalloc": "#1f77b4",
          "mimalloc": "#2ca02c", "tcmalloc": "#ff7f0e"}
EXTRA_COLORS = ["#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22"]


def write_chart(results, summary, path):
    """Horizontal grouped bars, one group per workload, one bar per allocator:
    peak RSS, wall time and peak brk as ratios to glibc on a log axis (ratios
    keep a 2 MiB `ls` and a 300 MiB `sort` readable on one axis); glibc's
    absolute value is printed next to its bar."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tables = {t["key"]: t for t in build_tables(results, summary)}
    allocators = allocator_names(results)
    workloads = workload_names(results)
    panels = [("rss", "Peak RSS (ratio to glibc)"), ("time", "Wall time (ratio to glibc)"),
              ("brk", "Peak brk (ratio to glibc)")]
    colors, extra = {}, iter(EXTRA_COLORS)
    for a in allocators:
        colors[a] = COLORS.get(a) or next(extra, "#333333")

    clip = 24.0   # longer bars are cut here and labelled with their ratio
    n_w, n_a = len(workloads), len(allocators)
    height = max(4.0, 0.34 * n_w * max(1, n_a) / 3 + 1.8)
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), height), sharey=True)
    bar_h = 0.8 / n_a
    for ax, (key, title) in zip(axes, panels):
        t = tables[key]
        lo, hi = 1.0, 1.0
        for j, a in enumerate(allocators):
            ys, xs = [], []
            for i, row in enumerate(t["rows"]):
                r = row["ratios"][a]
                if r:
                    y = i + (j - (n_a - 1) / 2) * bar_h
                    ys.append(y)
                    xs.append(min(r, clip))
                    lo, hi = min(lo, r), max(hi, min(r, clip))
                    if r > clip:
                        ax.annotate(f"{r:.0f}x", xy=(clip, y), xytext=(-2, 0),
                                    textcoords="offset points", ha="right", va="center",
                                    fontsize=6.5, color="white", fontweight="bold")
            ax.barh(ys, xs, height=bar_h * 0.95, color=colors[a], label=a)
        for i, row in enumerate(t["rows"]):
            v = row["values"].get("glibc")
            if isinstance(v, (int, float)):
                ax.annotate(fmt_value(v, t["unit"]), xy=(1.0, i - (n_a - 1) / 2 * bar_h),
                            xytext=(3, 0), textcoords="offset points", va="center",
                            fontsize=6.5, color="#444444")
            for a in allocators:
                if row["values"].get(a) == "FAIL":
                    ax.annotate(f"{a} FAIL", xy=(1.0, i), fontsize=7, color="red",
                                va="center")
        ax.set_xscale("log")
        ax.set_xlim(max(lo / 1.3, 0.05), max(hi * 1.15, 2.0))
        ax.axvline(1.0, color="black", linewidth=0.8)
        ax.set_title(title, fontsize=11)
        ax.grid(axis="x", which="both", linewidth=0.3, alpha=0.6)
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _: f"{x:g}"))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xticks([x for x in (0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 24)
                       if max(lo / 1.3, 0.05) <= x <= max(hi * 1.3, 2.0)])
    axes[0].set_yticks(range(n_w))
    axes[0].set_yticklabels(workloads, fontsize=8)
    axes[0].set_ylim(n_w - 0.5, -0.5)
    axes[-1].annotate(f"no bar: the allocator never calls brk; bars past {clip:g}x are cut "
                      "and labelled", xy=(0.0, -0.045), xycoords="axes fraction", fontsize=7.5,
                      color="#444444", va="top")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=n_a, frameon=False, fontsize=10,
               bbox_to_anchor=(0.5, 0.995))
    meta = results["meta"]
    fig.suptitle(f"myalloc benchmark ({meta.get('mode', '')}, {meta.get('reps', '?')} rep"
                 f"{'' if meta.get('reps') == 1 else 's'}): lower is better; glibc = 1, "
                 f"absolute glibc value next to its bar", fontsize=10, y=0.972)
    fig.tight_layout(rect=(0, 0, 1, 0.955))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def results_document(args, stamp, duration_s, machine_info, allocators, skipped, item,
                     items, notes, argv, runs, failures):
    """results.json, shared by bench/run.py (`item` "workload") and bench/speed.py
    (`item` "pattern"): meta, every run, and the failures ({(item name, allocator):
    reason})."""
    return {
        "meta": _results_meta(args, stamp, duration_s, machine_info, allocators, skipped,
                              item + "s", items, notes, argv),
        "runs": runs,
        "failures": [{item: w, "allocator": a, "reason": r} for (w, a), r in failures.items()],
    }


def _results_meta(args, stamp, duration_s, machine_info, allocators, skipped, key, items,
                  notes, argv):
    return {
        "mode": "quick" if args.quick else "full",
        "reps": args.reps,
        "started": stamp,
        "duration_s": duration_s,
        "machine": machine_info,
        "allocators": [{"name": a.name, "lib": a.lib, "source": a.source,
                        "version": a.version} for a in allocators],
        "skipped": [list(s) for s in skipped],
        key: [{"name": w.name, "group": w.group, "description": w.description,
               "command": w.display_command()} for w in items],
        "notes": notes,
        "argv": argv,
    }


def _md_table(header, rows, numeric=True):
    """A GitHub table; numeric tables right-align every column but the first."""
    out = ["| " + " | ".join(header) + " |",
           "|" + "|".join("---" if i == 0 or not numeric else "---:"
                          for i in range(len(header))) + "|"]
    out += ["| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |" for r in rows]
    return "\n".join(out)


def markdown_report(results, summary, chart_name="chart.png"):
    """REPORT.md: machine, allocators, how to read, ratio tables, absolute
    tables, myalloc's cross-check, failures."""
    meta = results["meta"]
    allocators = allocator_names(results)
    index = {(r["workload"], r["allocator"]): r for r in summary}
    out = [f"# myalloc benchmark report ({meta.get('mode', 'full')})", ""]
    m = meta.get("machine", {})
    out += ["## Machine", "", _md_table(["", ""], [
        ["CPU", m.get("cpu", "?")], ["cores", m.get("cores", "?")],
        ["memory", m.get("memory", "?")], ["kernel", m.get("kernel", "?")],
        ["glibc", m.get("glibc", "?")], ["OS", m.get("os", "?")],
        ["Python (workloads)", m.get("python", "?")],
        ["repository commit", m.get("commit", "?")],
        ["run", f"{meta.get('started', '?')}, {meta.get('duration_s', 0):.0f} s, "
                f"{meta.get('reps', '?')} timed repetition(s), allocators interleaved"],
    ], numeric=False), ""]
    if m.get("tools"):
        out += ["Programs: " + "; ".join(f"{k} {v}" for k, v in m["tools"].items()), ""]
    out += ["## Allocators", "", _md_table(
        ["allocator", "library", "version"],
        [[a["name"], f"`{a['source']}`" if a.get("source") else "(none: baseline)",
          a.get("version", "")] for a in meta["allocators"]], numeric=False), ""]
    for name, reason in meta.get("skipped", []):
        out.append(f"- skipped {name}: {reason}")
    if meta.get("skipped"):
        out.append("")
    out += ["## How to read this", "", HOW_TO_READ, "", f"![chart]({chart_name})", ""]
    for t in build_tables(results, summary):
        out += [f"## {t['title']}: ratio to glibc", "", f"{t['note']}. glibc column: "
                f"absolute value; **bold** = best.", ""]
        rows = _cells(t, allocators, t["unit"], lambda s: f"**{s}**")
        out += [_md_table(["workload"] + allocators, [[n] + c for n, c in rows]), ""]
    out += ["## Absolute values", "",
            "Wall time and peak RSS: median [min-max] over the timed repetitions.", ""]
    for key, title, fmt in (
            ("time", "Wall time", lambda r: _spread(r, "time", "s")),
            ("rss", "Peak RSS", lambda r: _spread(r, "rss", "bytes")),
            ("brk", "Peak brk (largest process; top process in parentheses when different)",
             lambda r: _with_main(r, "peak_brk")),
            ("held", "Peak held (largest process)", lambda r: fmt_bytes(r.get("peak_held")))):
        rows = []
        for w in workload_names(results):
            cells = []
            for a in allocators:
                r = index.get((w, a))
                cells.append("-" if not r or r["status"] == "missing"
                             else "FAIL" if r["status"] == "FAIL" else fmt(r))
            rows.append([w] + cells)
        out += [f"### {title}", "", _md_table(["workload"] + allocators, rows), ""]
    check = crosscheck_rows(summary)
    if check:
        out += ["## myalloc's own statistics vs the trace", "",
                "`brk_extent_peak` from `MYALLOC_STATS_FILE` (written by the top process, "
                "the last to exit) against the traced peak brk of the top process. "
                "They should agree exactly for single-process workloads.", "",
                _md_table(["workload", "processes", "stats brk_extent_peak", "traced peak brk",
                           "difference (bytes)", "held_bytes_peak", "malloc calls",
                           "mmap fallbacks"],
                          [[r["workload"], r["processes"], fmt_bytes(r["stats"]),
                            fmt_bytes(r["traced"]), f"{r['diff']:+d}", fmt_bytes(r["held"]),
                            r["malloc_calls"], r["mmap_fallback_calls"]] for r in check]), ""]
    out += ["## Workloads", "", _md_table(
        ["workload", "what", "command"],
        [[w["name"], w.get("description", ""), f"`{w.get('command', '')}`"]
         for w in meta["workloads"]], numeric=False), ""]
    fails = results.get("failures", [])
    out += ["## Failures", ""]
    if fails:
        out += [f"- **{f['workload']}** under **{f['allocator']}**: {f['reason']}" for f in fails]
    else:
        out.append("None: every workload produced identical output under every allocator.")
    out.append("")
    return "\n".join(out)


HOW_TO_READ = """\
Each table row is one workload; the glibc column is glibc's absolute figure
and every other column is that allocator's figure divided by glibc's (0.80 =
20 % less than glibc; lower is better for every metric); the best value in a
row is marked. The last row is the geometric mean of the ratios (with the
number of workloads it covers when some are missing).

* **Peak RSS** is the fair memory comparison across all allocators: it is what
  the workload actually touched, measured by `ru_maxrss` through a tiny C
  launcher (not a fork of the Python driver, whose own RSS would be the floor).
* **Peak brk** is the headline between glibc and myalloc, which both grow the
  heap with `brk`. It is exact (every `brk` call, traced with
  `strace -f --seccomp-bpf`), per process, the largest process counts (for `gcc`
  that is `cc1`). jemalloc and mimalloc never call `brk`, so their 0 means
  nothing and is not ranked; tcmalloc does use `brk` first.
* **Peak held** adds anonymous private mappings to the break extent. It counts
  address space an allocator reserved but never touched (mimalloc's segments,
  glibc's per-thread arenas, GNU sort's buffer), so it overstates; use RSS to
  rank.
* **Wall time** comes from separate untraced runs, allocators interleaved in
  each repetition; the median is shown, min-max in the absolute tables. Read
  the spread before a ratio: on a shared virtual machine one program's runs
  can differ by 30 % or more, and CPU time moves with wall time (the CPU
  itself runs slower at times), so only large or consistent ratios mean
  something. The memory figures repeat: peak brk exactly, RSS within a few %.
  jemalloc and mimalloc release memory on timers, so their RSS varies more.
* Every workload's output (stdout and files written) is hashed and must equal
  glibc's; an allocator whose output differs is listed under Failures and is
  not timed."""


def _spread(r, key, unit):
    med = r.get(f"{key}_median_s" if unit == "s" else f"{key}_median_bytes")
    lo = r.get(f"{key}_min_s" if unit == "s" else f"{key}_min_bytes")
    hi = r.get(f"{key}_max_s" if unit == "s" else f"{key}_max_bytes")
    if med is None:
        return "-"
    if lo == hi:
        return fmt_value(med, unit)
    return f"{fmt_value(med, unit)} [{fmt_value(lo, unit)}-{fmt_value(hi, unit)}]"


def _with_main(r, key):
    v, main = r.get(key), r.get(key + "_main")
    text = fmt_bytes(v)
    if v is not None and main is not None and main != v:
        text += f" ({fmt_bytes(main)})"
    return text


def write_all(results, folder):
    """Write every report file into `folder`; return the terminal text."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    summary = summarize(results)
    write_json(results, summary, folder / "results.json")
    write_csv(results, summary, folder)
    write_chart(results, summary, folder / "chart.png")
    (folder / "REPORT.md").write_text(markdown_report(results, summary, "chart.png"))
    return terminal_report(results, summary)


def main(argv):
    """Re-render the reports from a saved results.json."""
    if len(argv) != 3:
        sys.stderr.write("usage: report.py RESULTS.json OUT_DIR\n")
        return 2
    results = json.loads(Path(argv[1]).read_text())
    results.pop("summary", None)
    sys.stdout.write(write_all(results, argv[2]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

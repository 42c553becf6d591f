"""Reports of the speed benchmark (bench/speed.py): table, CSV, chart, REPORT.md.

Input is the results dictionary bench/speed.py builds and saves as
results.json: ``meta`` (machine, allocators, patterns), ``runs`` (one record
per timed run) and ``failures``.  Everything here is a pure function of it,
so tests/test_bench.py checks the figures from fixed data, and a saved
results.json can be re-rendered with
``python bench/speed_report.py results.json OUT_DIR``.

The figures per pattern: each allocator's median wall time (min-max kept);
each allocator's time divided by myalloc's (>1: myalloc is faster); and two
columns the other way round, myalloc / fastest peer and myalloc / glibc
(<1: myalloc is faster).  Per group (C patterns, Python workloads) the
geometric mean of each ratio.

Paired ratios: the allocators run one after another within each round, so
the ratio of two of them in the same round is less exposed to a machine
whose speed drifts (a shared virtual machine) than the ratio of their
medians. Each row also carries the median over rounds of myalloc's time /
glibc's and / the best peer's in the same round; the report shows both.
"""

import csv
import json
import statistics
import sys
from pathlib import Path

from report import COLORS, EXTRA_COLORS, _md_table, geomean

GROUP_LABELS = {"c": "C", "python": "Python"}
CSV_FIELDS = ["pattern", "group", "allocator", "status", "reason", "median_s", "min_s",
              "max_s", "runs", "over_glibc", "over_myalloc"]


# --------------------------------------------------------------------------
# figures
# --------------------------------------------------------------------------

def allocator_names(results):
    return [a["name"] for a in results["meta"]["allocators"]]


def peers(results):
    return [a for a in allocator_names(results) if a not in ("glibc", "myalloc")]


def summarize(results):
    """One dict per (pattern, allocator): status (ok / FAIL / missing) and
    the median, min and max wall time of its successful runs."""
    failed = {(f["pattern"], f["allocator"]): f["reason"] for f in results.get("failures", [])}
    walls = {}
    for run in results["runs"]:
        if run["ok"]:
            walls.setdefault((run["pattern"], run["allocator"]), []).append(run["wall_s"])
    rows = []
    for p in results["meta"]["patterns"]:
        for a in allocator_names(results):
            key = (p["name"], a)
            row = {"pattern": p["name"], "group": p.get("group", ""), "allocator": a,
                   "status": "ok", "reason": None, "median_s": None, "min_s": None,
                   "max_s": None, "runs": 0}
            w = walls.get(key, [])
            if key in failed:
                row.update(status="FAIL", reason=failed[key])
            elif not w:
                row.update(status="missing", reason="not measured")
            else:
                row.update(median_s=statistics.median(w), min_s=min(w), max_s=max(w),
                           runs=len(w))
            rows.append(row)
    return rows


def paired(results):
    """{(pattern, allocator): [its time / myalloc's time in the same round, one
    value per round in which both ran successfully]}."""
    rounds = {}
    for run in results["runs"]:
        if run["ok"]:
            rounds.setdefault((run["pattern"], run["rep"]), {})[run["allocator"]] = run["wall_s"]
    out = {}
    for (pattern, _), times in sorted(rounds.items()):
        mine = times.get("myalloc")
        if not mine:
            continue
        for a, t in times.items():
            out.setdefault((pattern, a), []).append(t / mine)
    return out


def _paired_mine(per_round, peer, pattern):
    """Median over rounds of myalloc's time / peer's (None without a round)."""
    values = [1 / r for r in per_round.get((pattern, peer), []) if r > 0]
    return statistics.median(values) if values else None


def _ratio(a, b):
    return a / b if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b > 0 \
        else None


def speed_table(results, summary=None):
    """{"rows": [...], "geomeans": {group: {...}}}.  A row: pattern, group,
    values {alloc: median s | "FAIL" | None}, over_myalloc {alloc: time /
    myalloc's}, over_glibc {alloc: time / glibc's}, best_peer (name),
    my_best (myalloc / best peer), my_glibc (myalloc / glibc), and the same
    two as medians of per-round ratios: paired_best, paired_glibc."""
    summary = summary if summary is not None else summarize(results)
    per_round = paired(results)
    allocs, peer_names = allocator_names(results), peers(results)
    index = {(r["pattern"], r["allocator"]): r for r in summary}
    rows = []
    for p in results["meta"]["patterns"]:
        values = {}
        for a in allocs:
            r = index[(p["name"], a)]
            values[a] = "FAIL" if r["status"] == "FAIL" else r["median_s"]
        mine = values.get("myalloc")
        timed = [(values[a], a) for a in peer_names if isinstance(values[a], (int, float))]
        best = min(timed)[1] if timed else None
        rows.append({
            "pattern": p["name"], "group": p.get("group", ""), "values": values,
            "over_myalloc": {a: _ratio(values[a], mine) for a in allocs},
            "over_glibc": {a: _ratio(values[a], values.get("glibc")) for a in allocs},
            "best_peer": best,
            "my_best": _ratio(mine, values[best]) if best else None,
            "my_glibc": _ratio(mine, values.get("glibc")),
            "paired_best": _paired_mine(per_round, best, p["name"]) if best else None,
            "paired_glibc": _paired_mine(per_round, "glibc", p["name"]),
        })
    geomeans = {}
    for group in dict.fromkeys(r["group"] for r in rows):
        members = [r for r in rows if r["group"] == group]
        geomeans[group] = {
            "n": len(members),
            "over_myalloc": {a: geomean([r["over_myalloc"][a] for r in members]) for a in allocs},
            "my_best": geomean([r["my_best"] for r in members]),
            "my_glibc": geomean([r["my_glibc"] for r in members]),
            "paired_best": geomean([r["paired_best"] for r in members]),
            "paired_glibc": geomean([r["paired_glibc"] for r in members]),
            "counts": {"my_glibc": sum(1 for r in members if r["my_glibc"])},
        }
    return {"rows": rows, "geomeans": geomeans}


# --------------------------------------------------------------------------
# text
# --------------------------------------------------------------------------

def fmt_s(v):
    if v is None:
        return "-"
    if v == "FAIL":
        return "FAIL"
    return f"{v:.3f}" if v < 10 else f"{v:.2f}"


def fmt_r(r):
    return "-" if r is None else f"{r:.2f}"


def table_rows(results, table):
    """Header and rows of cell strings, shared by the terminal and REPORT.md:
    per allocator 'median (time / myalloc)', then my/best-peer, my/glibc;
    after each group its geometric-mean row."""
    allocs = allocator_names(results)
    header = ["pattern"] + allocs + ["myalloc/best peer", "myalloc/glibc"]
    out = []
    groups = list(table["geomeans"])
    for group in groups:
        for row in (r for r in table["rows"] if r["group"] == group):
            cells = [row["pattern"]]
            for a in allocs:
                v, r = row["values"][a], row["over_myalloc"][a]
                text = fmt_s(v)
                if a != "myalloc" and r is not None:
                    text += f" ({r:.2f})"
                cells.append(text)
            best = fmt_r(row["my_best"])
            if row["best_peer"] and row["my_best"] is not None:
                best += f" {row['best_peer']}"
            cells += [best, fmt_r(row["my_glibc"])]
            out.append(("row", cells))
        g = table["geomeans"][group]
        cells = [f"geomean {GROUP_LABELS.get(group, group)}"]
        for a in allocs:
            r = g["over_myalloc"][a]
            cells.append("" if a == "myalloc" or r is None else f"({r:.2f})")
        gm = fmt_r(g["my_glibc"])
        if g["my_glibc"] is not None and g["counts"]["my_glibc"] < g["n"]:
            gm += f" ({g['counts']['my_glibc']}/{g['n']})"
        cells += [fmt_r(g["my_best"]), gm]
        out.append(("geomean", cells))
    return header, out


def cores_note(results):
    """The caveat for the scale-N rows (and the 2-thread patterns) given the
    machine's core count."""
    cores = results["meta"].get("machine", {}).get("cores")
    if not cores:
        return ("scale-N runs N threads with a fixed amount of work each; with more threads "
                "than cores its wall time shows contention, not parallel speed-up.")
    over = [p["name"] for p in results["meta"]["patterns"]
            if p["name"].startswith("scale-") and p["name"][6:].isdigit()
            and int(p["name"][6:]) > cores]
    text = (f"This machine has {cores} cores. scale-N runs N threads with a fixed amount of "
            f"work each; perfect scaling would take max(1, N/{cores}) times scale-1's time.")
    if over:
        text += (f" {' and '.join(over)} run more threads than cores, so their wall time "
                 f"shows how an allocator copes with contention and time-slicing (locks, "
                 f"remote frees, caches shared and evicted between threads), not parallel "
                 f"speed-up.")
    if cores < 2:
        text += " threads2 and prodcons need 2 cores to run their threads in parallel."
    return text


LEGEND = ("Median wall time in seconds; in parentheses that allocator's time / myalloc's "
          "(>1: myalloc is faster). myalloc/best peer = myalloc's time / the fastest of "
          "jemalloc, mimalloc, tcmalloc; myalloc/glibc = myalloc's time / glibc's (<1: "
          "myalloc is faster). geomean rows: geometric means of those ratios over the group.")


def terminal_report(results, summary=None):
    summary = summary if summary is not None else summarize(results)
    table = speed_table(results, summary)
    header, rows = table_rows(results, table)
    reps = results["meta"].get("reps")
    lines = ["", f"Wall time, median of {reps} run(s) ({results['meta'].get('mode', '')})"]
    lines += ["  " + part for part in _wrap(LEGEND, 100)]
    text = _aligned([header] + [cells for _, cells in rows])
    lines.append(text[0])
    for (kind, _), line in zip(rows, text[1:]):
        lines.append(line)
        if kind == "geomean":
            lines.append("")
    lines += ["  " + part for part in _wrap(cores_note(results), 100)]
    goals = targets(table)
    lines += ["", f"  Targets (issue 6): {sum(1 for t in goals if t[3])} of {len(goals)} met; "
              "not met: " + (", ".join(f"{w} {v:.2f} > {lim:.2f}" if v is not None else f"{w} (no run)"
                                     for w, v, lim, ok, _ in goals if not ok) or "none")]
    lines += [f"  Paired (median of per-round ratios): {sum(1 for t in goals if t[4] is not None and t[4] <= t[2])}"
              f" of {len(goals)} met"]
    got = instruction_rows(results)
    if got is not None:
        header, rows, notes = got
        lines += ["", "Instructions per pair (valgrind; in parentheses: beyond floor)"]
        lines += _aligned([header] + rows)
        lines += [f"  failed: {n}" for n in notes]
    fails = results.get("failures", [])
    if fails:
        lines += ["", f"FAILURES ({len(fails)}): not timed"]
        lines += [f"  {f['pattern']} under {f['allocator']}: {f['reason']}" for f in fails]
    return "\n".join(lines) + "\n"


def _aligned(rows):
    """Rows of cells as terminal lines: indented, the first column left-aligned and the
    others right-aligned, each as wide as its widest cell."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  " + "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                             for i, (c, w) in enumerate(zip(r, widths)))
            for r in rows]


def _wrap(text, width):
    out, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            out.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    return out + ([line] if line else [])


# --------------------------------------------------------------------------
# files
# --------------------------------------------------------------------------

def write_json(results, summary, table, path):
    data = dict(results)
    data["summary"] = summary
    data["table"] = table
    Path(path).write_text(json.dumps(data, indent=1) + "\n")


def write_csv(results, summary, table, path):
    ratios = {r["pattern"]: r for r in table["rows"]}
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        w.writeheader()
        for row in summary:
            out = {k: row.get(k) for k in CSV_FIELDS}
            t = ratios[row["pattern"]]
            out["over_glibc"] = t["over_glibc"][row["allocator"]]
            out["over_myalloc"] = t["over_myalloc"][row["allocator"]]
            w.writerow(out)


def write_chart(results, table, path):
    """Grouped bars, one group per pattern, one bar per allocator: wall time
    divided by glibc's, log scale; FAIL printed where a bar is missing."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    allocs = allocator_names(results)
    colors, extra = {}, iter(EXTRA_COLORS)
    for a in allocs:
        colors[a] = COLORS.get(a) or next(extra, "#333333")
    rows = table["rows"]
    n_p, n_a = len(rows), len(allocs)
    fig, ax = plt.subplots(figsize=(max(8.0, 0.2 * n_p * n_a + 2.5), 5.2))
    width = 0.8 / n_a
    lo, hi = 1.0, 1.0
    for j, a in enumerate(allocs):
        xs, ys = [], []
        for i, row in enumerate(rows):
            x = i + (j - (n_a - 1) / 2) * width
            r = row["over_glibc"][a]
            if r:
                xs.append(x)
                ys.append(r)
                lo, hi = min(lo, r), max(hi, r)
            elif row["values"][a] == "FAIL":
                ax.annotate("FAIL", xy=(x, 1.0), rotation=90, ha="center", va="bottom",
                            fontsize=7, color="red")
        ax.bar(xs, ys, width=width * 0.95, color=colors[a], label=a)
    for i in range(1, n_p):
        if rows[i]["group"] != rows[i - 1]["group"]:
            ax.axvline(i - 0.5, color="#888888", linewidth=0.8, linestyle="--")
    labels = []
    for row in rows:
        v = row["values"].get("glibc")
        labels.append(row["pattern"] + (f"\n{v:.2f} s" if isinstance(v, (int, float)) else ""))
    ax.set_yscale("log")
    ax.set_ylim(lo / 1.3, hi * 1.3)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda y, _: f"{y:g}"))
    ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_yticks([y for y in (0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100)
                   if lo / 1.3 <= y <= hi * 1.3])
    ax.set_xticks(range(n_p))
    ax.set_xticklabels(labels, fontsize=8)
    ax.set_xlim(-0.6, n_p - 0.4)
    ax.set_ylabel("wall time / glibc's (log scale; lower is faster)")
    ax.grid(axis="y", which="both", linewidth=0.3, alpha=0.6)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False, fontsize=9)
    meta = results["meta"]
    ax.set_title(f"myalloc speed benchmark ({meta.get('mode', '')}, median of "
                 f"{meta.get('reps', '?')}): glibc = 1; glibc's seconds under each name",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


#: Issue 6's targets: on every C pattern myalloc's time is at most the best
#: peer's and at most half glibc's; on every Python workload at most glibc's,
#: and at most 0.9x glibc's as a geometric mean.
C_TARGETS = {"my_best": 1.0, "my_glibc": 0.5}
PY_TARGETS = {"my_glibc": 1.0, "geomean_my_glibc": 0.9}


PAIRED = {"my_best": "paired_best", "my_glibc": "paired_glibc"}


def targets(table):
    """[(what, measured, limit, met, paired)] for every target of issue 6 that
    this run has the numbers for (a failed or missing run is not met). The
    verdict is on the ratio of medians, as the issue defines it; `paired` is
    the same ratio as a median of per-round ratios, shown beside it."""
    out = []
    for r in table["rows"]:
        python = r["group"].lower().startswith("py")
        limits = {"my_glibc": PY_TARGETS["my_glibc"]} if python else C_TARGETS
        for key, limit in limits.items():
            label = "myalloc/best peer" if key == "my_best" else "myalloc/glibc"
            v = r[key]
            out.append((f"{r['pattern']}: {label}", v, limit, v is not None and v <= limit,
                        r[PAIRED[key]]))
    for group, g in table["geomeans"].items():
        if group.lower().startswith("py"):
            v = g["my_glibc"]
            limit = PY_TARGETS["geomean_my_glibc"]
            out.append((f"{group} geomean: myalloc/glibc", v, limit,
                        v is not None and v <= limit, g["paired_glibc"]))
    return out


def targets_markdown(table):
    rows = targets(table)
    met = sum(1 for t in rows if t[3])
    paired_met = sum(1 for t in rows if t[4] is not None and t[4] <= t[2])
    lines = [f"## Targets (issue 6): {met} of {len(rows)} met", "",
             "measured: ratio of the medians (the verdict); paired: median of the "
             f"per-round ratios, by which {paired_met} of {len(rows)} are met.", "",
             _md_table(["target", "measured", "paired", "limit", "met"],
                       [[what, "-" if v is None else f"{v:.2f}",
                         "-" if pv is None else f"{pv:.2f}", f"<= {limit:.2f}",
                         "yes" if ok else "**no**"] for what, v, limit, ok, pv in rows],
                       numeric=False), ""]
    return lines


INSTRUCTIONS_LEGEND = (
    "Instructions per malloc/free pair, counted by valgrind (cachegrind, no cache "
    "simulation): the same on every run, whatever the machine's load. Each pattern runs "
    "with P and 2P pairs and the difference is divided by P, so start-up and the filling "
    "of the live slots cancel out; the count includes the program's own work. In "
    "parentheses: instructions beyond `floor` (bench/speed/floor.c, the least an allocator "
    "can do). `floor+{pad}` is floor with {pad} instructions added to its `free` that the "
    "CPU does not execute (register zeroing) but that take slots of its out-of-order "
    "window: the README measures what that alone costs in time. Every run preloads "
    "bench/speed/sbrk_shim.c, a program break that valgrind's 8 MB limit does not stop "
    "(myalloc moves the break with sbrk; glibc calls brk itself and continues in "
    "mappings past 8 MB). A dash: not counted (floor never reuses blocks of 4 KiB or "
    "more, so a long `mixed` run exhausts its reservation).")


def instruction_rows(results):
    """(header, rows, notes) of the instruction counts, or None if there are none."""
    ins = results.get("instructions") or {}
    if not ins.get("counts"):
        return None
    libs = ins["libraries"]
    by = {(c["pattern"], c["library"]): c for c in ins["counts"]}
    rows, notes = [], []
    for p in ins["patterns"]:
        floor = (by.get((p["name"], "floor")) or {}).get("per_pair")
        cells = [p["name"]]
        for lib in libs:
            c = by.get((p["name"], lib))
            if c is None:
                cells.append("-")
                continue
            v = c.get("per_pair")
            if v is None:
                cells.append("failed")
                if c.get("error"):
                    notes.append(f"{p['name']} under {lib}: {c['error']}")
            elif floor is None or lib == "floor":
                cells.append(f"{v:.0f}")
            else:
                cells.append(f"{v:.0f} ({v - floor:+.0f})")
        rows.append(cells)
    return ["pattern"] + libs, rows, notes


def instructions_markdown(results):
    ins = results.get("instructions") or {}
    out = ["## Instructions per pair", ""]
    got = instruction_rows(results)
    if got is None:
        out += [f"Not counted: {ins.get('skipped', 'no counts in these results')}.", ""]
        return out
    header, rows, notes = got
    out += [INSTRUCTIONS_LEGEND.format(pad=ins.get("padding", "?")), "",
            _md_table(header, rows), ""]
    out += [f"- failed: {n}" for n in notes]
    out += ["", _md_table(["pattern", "what"], [[p["name"], p["description"]]
                                              for p in ins["patterns"]], numeric=False), ""]
    return out


def markdown_report(results, summary, table, chart_name="chart.png"):
    meta = results["meta"]
    m = meta.get("machine", {})
    allocs = allocator_names(results)
    index = {(r["pattern"], r["allocator"]): r for r in summary}
    header, rows = table_rows(results, table)
    out = [f"# myalloc speed benchmark ({meta.get('mode', 'full')})", "",
           f"{meta.get('started', '?')}, {meta.get('duration_s', 0):.0f} s, "
           f"{meta.get('reps', '?')} repetition(s), allocators interleaved (order rotated "
           f"each round).", "", "## Wall time", "", LEGEND, "",
           _md_table(header, [[f"**{c[0]}**" if k == "geomean" else c[0]] + c[1:]
                              for k, c in rows]), "",
           cores_note(results), "", f"![chart]({chart_name})", ""]
    out += targets_markdown(table)
    for note in meta.get("notes", []):
        out.append(f"- note: {note}")
    out += ["## Wall time in seconds: median [min-max]", "",
            _md_table(["pattern"] + allocs, [[p["name"]] + [_spread(index[(p["name"], a)])
                                                           for a in allocs]
                                             for p in meta["patterns"]]), ""]
    out += instructions_markdown(results)
    out += ["## Patterns", "", HOW, "",
            _md_table(["pattern", "what", "command"],
                      [[p["name"], p.get("description", ""), f"`{p.get('command', '')}`"]
                       for p in meta["patterns"]], numeric=False), ""]
    out += ["## Machine", "", _md_table(["", ""], [
        ["CPU", m.get("cpu", "?")], ["cores", m.get("cores", "?")],
        ["memory", m.get("memory", "?")], ["kernel", m.get("kernel", "?")],
        ["glibc", m.get("glibc", "?")], ["OS", m.get("os", "?")],
        ["Python (workloads)", m.get("python", "?")],
        ["repository commit", m.get("commit", "?")]], numeric=False), ""]
    out += ["## Allocators", "", _md_table(
        ["allocator", "library", "version"],
        [[a["name"], f"`{a['source']}`" if a.get("source") else "(none: baseline)",
          a.get("version", "")] for a in meta["allocators"]], numeric=False), ""]
    out += [f"- skipped {name}: {reason}" for name, reason in meta.get("skipped", [])]
    argv = " ".join(meta.get("argv", []))
    out += ["", "## Commands", "", "```",
            "make bench-speed            # 5 repetitions, full counts",
            "make bench-speed-quick      # 1 repetition, half the pairs, small Python inputs",
            f"python bench/speed.py {argv}".rstrip() + "   # this run",
            "python bench/speed_report.py results.json OUT_DIR   # re-render these reports",
            "```", "", "## Failures", ""]
    fails = results.get("failures", [])
    if fails:
        out += [f"- **{f['pattern']}** under **{f['allocator']}**: {f['reason']}"
                for f in fails]
    else:
        out.append("None: every run's output equalled glibc's.")
    out.append("")
    return "\n".join(out)


HOW = """\
The C patterns are one program, `bench/speed/churn.c`, built with `gcc -O2
-pthread`. Its random numbers (xorshift64*) have fixed seeds, so every
allocator gets the same requests; it writes the first and last byte of every
block and reads them back before freeing, and prints a checksum of what it
read, which must equal glibc's. The Python rows are the main suite's
workloads (`bench/pyworkloads.py`) with `PYTHONMALLOC=malloc`, so every
object goes through the allocator. Times are wall clock of the whole process
(start-up included) through the suite's launcher (`bench/launch.c`)."""


def _spread(r):
    if r["status"] == "FAIL":
        return "FAIL"
    if r["median_s"] is None:
        return "-"
    if r["min_s"] == r["max_s"]:
        return fmt_s(r["median_s"])
    return f"{fmt_s(r['median_s'])} [{fmt_s(r['min_s'])}-{fmt_s(r['max_s'])}]"


def write_all(results, folder):
    """Write results.json, speed.csv, chart.png and REPORT.md into folder;
    return the terminal table."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    summary = summarize(results)
    table = speed_table(results, summary)
    write_json(results, summary, table, folder / "results.json")
    write_csv(results, summary, table, folder / "speed.csv")
    write_chart(results, table, folder / "chart.png")
    (folder / "REPORT.md").write_text(markdown_report(results, summary, table))
    text = terminal_report(results, summary)
    (folder / "table.txt").write_text(text)
    return text


def main(argv):
    """Re-render the reports from a saved results.json."""
    if len(argv) != 3:
        sys.stderr.write("usage: speed_report.py RESULTS.json OUT_DIR\n")
        return 2
    results = json.loads(Path(argv[1]).read_text())
    for key in ("summary", "table"):
        results.pop(key, None)
    sys.stdout.write(write_all(results, argv[2]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

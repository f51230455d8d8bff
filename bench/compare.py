#!/usr/bin/env python3
"""Interleaved benchmark runner and reporter for memtap (used by bench/run.sh).

Usage: compare.py SPEC SCRATCH_DIR RESULTS_MD [HEADER_MD]

SPEC is a line-oriented file:
  group NAME TITLE...            a group of configurations compared together
  cfg GROUP LABEL REPS CMD...    a configuration; CMD is split like a shell
                                 would (shlex); the first cfg of a group is its
                                 baseline (ratios are against its median)
  check GROUP REGEX              every run's stdout must contain the line the
                                 baseline printed that matches REGEX
  warmup GROUP LABEL...          run these configurations once, untimed, first
  events GROUP COUNT             allocator calls per run (for ns/call overhead)
  base GROUP LABEL BASE          LABEL's ratios and per-call overhead are
                                 against BASE's medians instead of the first
                                 cfg's (several allocators in one group, each
                                 against its own untraced run)
  startup GROUP LABEL STARTUP    subtract STARTUP's median from LABEL's when
                                 computing LABEL's per-call overhead (STARTUP
                                 runs a different workload: no output check)
  note GROUP TEXT...             a note printed under the group's table
  # ...                          comment

For repetition i (0-based) every configuration of the group that still has
runs left runs once, in an order rotated by i, so that slow drifts of the
machine (frequency, other tenants) hit every configuration alike.  Wall time
is measured with a monotonic clock around fork/exec/wait4; CPU time and peak
RSS come from the wait4 rusage (max RSS of the process tree: the largest
single process among the child and its waited-for descendants, exactly what
/usr/bin/time -v reports).  Medians are reported; ratios are median/median.
"""
import json
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import time


def parse_spec(path):
    groups = []
    by_name = {}
    for lineno, raw in enumerate(open(path), 1):
        line = raw.rstrip("\n")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        kw, _, rest = line.partition(" ")
        if kw == "group":
            name, _, title = rest.partition(" ")
            g = {"name": name, "title": title, "cfgs": [], "check": None,
                 "warmup": [], "events": None, "startup": {}, "base": {},
                 "notes": []}
            groups.append(g)
            by_name[name] = g
            continue
        gname, _, rest = rest.partition(" ")
        if gname not in by_name:
            sys.exit(f"{path}:{lineno}: unknown group {gname!r}")
        g = by_name[gname]
        if kw == "cfg":
            label, reps, cmd = rest.split(" ", 2)
            g["cfgs"].append({"label": label, "reps": int(reps),
                              "cmd": shlex.split(cmd), "cmdline": cmd,
                              "runs": [], "failures": []})
        elif kw == "check":
            g["check"] = re.compile(rest)
        elif kw == "warmup":
            g["warmup"] = rest.split()
        elif kw == "events":
            g["events"] = float(rest)
        elif kw == "base":
            label, base = rest.split()
            g["base"][label] = base
        elif kw == "startup":
            label, startup = rest.split()
            g["startup"][label] = startup
        elif kw == "note":
            g["notes"].append(rest)
        else:
            sys.exit(f"{path}:{lineno}: unknown keyword {kw!r}")
    return groups


def clean(scratch):
    for e in os.listdir(scratch):
        p = os.path.join(scratch, e)
        if os.path.isdir(p) and not os.path.islink(p):
            shutil.rmtree(p, ignore_errors=True)
        else:
            try:
                os.unlink(p)
            except OSError:
                pass


def run_once(cmd, scratch, logdir):
    """Runs cmd in scratch; returns (wall_s, cpu_s, maxrss_kib, rc, stdout)."""
    out_path = os.path.join(logdir, "last.stdout")
    err_path = os.path.join(logdir, "last.stderr")
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, cwd=scratch, stdin=subprocess.DEVNULL,
                             stdout=out, stderr=err)
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    clean(scratch)
    with open(out_path, "r", errors="replace") as f:
        stdout = f.read()
    return wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss, p.returncode, stdout


def expected_line(g, stdout):
    if not g["check"]:
        return None
    for line in stdout.splitlines():
        if g["check"].search(line):
            return line.strip()
    return ""


def run_group(g, scratch, logdir):
    cfgs = g["cfgs"]
    print(f"== {g['name']}: {g['title']}", flush=True)
    expect = None
    for c in cfgs:
        if c["label"] in g["warmup"]:
            wall, _, _, rc, out = run_once(c["cmd"], scratch, logdir)
            print(f"   warm-up {c['label']}: {wall:.3f} s rc={rc}", flush=True)
            if c is cfgs[0] and rc == 0:
                expect = expected_line(g, out)
    nrep = max(c["reps"] for c in cfgs)
    for i in range(nrep):
        order = cfgs[i % len(cfgs):] + cfgs[:i % len(cfgs)]
        for c in order:
            if len(c["runs"]) + len(c["failures"]) >= c["reps"]:
                continue
            wall, cpu, rss, rc, out = run_once(c["cmd"], scratch, logdir)
            line = expected_line(g, out)
            bad = None
            if rc != 0:
                bad = f"exit status {rc}"
            elif g["check"] is not None and \
                    c["label"] not in g["startup"].values():
                if expect is None and c is cfgs[0]:
                    expect = line
                if not line:
                    bad = "no line matching the check pattern in its output"
                elif expect is not None and line != expect:
                    bad = f"output {line!r} differs from baseline {expect!r}"
            if bad:
                c["failures"].append(bad)
                keep = os.path.join(logdir, f"fail-{g['name']}-{c['label']}")
                for ext in ("stdout", "stderr"):
                    shutil.copy(os.path.join(logdir, f"last.{ext}"),
                                f"{keep}.{ext}")
                print(f"   rep {i + 1} {c['label']:<18} FAILED: {bad} "
                      f"(see {keep}.stderr)", flush=True)
            else:
                c["runs"].append({"wall": wall, "cpu": cpu, "rss_kib": rss})
                print(f"   rep {i + 1} {c['label']:<18} {wall:8.3f} s  "
                      f"cpu {cpu:8.3f} s  rss {rss / 1024:7.1f} MiB", flush=True)


def med(c, key):
    vals = [r[key] for r in c["runs"]]
    return statistics.median(vals) if vals else None


def fmt(v, spec, none="-"):
    return none if v is None else format(v, spec)


def ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def summarize(g):
    first = g["cfgs"][0]
    rows = []
    for c in g["cfgs"]:
        base = next((x for x in g["cfgs"] if x["label"] == g["base"].get(c["label"])), first)
        bw, bc, br = med(base, "wall"), med(base, "cpu"), med(base, "rss_kib")
        w, cp, r = med(c, "wall"), med(c, "cpu"), med(c, "rss_kib")
        walls = [x["wall"] for x in c["runs"]]
        row = {
            "label": c["label"], "runs": len(c["runs"]),
            "failures": c["failures"], "cmd": c["cmdline"],
            "wall_median_s": w, "wall_min_s": min(walls) if walls else None,
            "wall_max_s": max(walls) if walls else None,
            "wall_ratio": ratio(w, bw), "cpu_median_s": cp,
            "cpu_ratio": ratio(cp, bc), "maxrss_median_mib":
                None if r is None else r / 1024, "rss_ratio": ratio(r, br),
            "overhead_ns_per_call": None, "against": base["label"],
        }
        if g["events"] and c is not base and w is not None and \
                bw is not None and c["label"] not in g["startup"].values():
            extra = w - bw
            st = g["startup"].get(c["label"])
            if st:
                sc = next((x for x in g["cfgs"] if x["label"] == st), None)
                sw = med(sc, "wall") if sc else None
                extra = None if sw is None else w - sw - bw
            if extra is not None:
                row["overhead_ns_per_call"] = extra / g["events"] * 1e9
        rows.append(row)
    return rows


def table(g, rows):
    has_ev = any(r["overhead_ns_per_call"] is not None for r in rows)
    has_base = bool(g["base"])
    head = ["configuration", "runs", "median wall s", "min..max s",
            "wall ratio", "median CPU s", "CPU ratio", "peak RSS MiB",
            "RSS ratio"]
    if has_base:
        head.insert(1, "ratios against")
    if has_ev:
        head.append("extra ns/call")
    lines = ["| " + " | ".join(head) + " |",
             "|" + "|".join("---" for _ in head) + "|"]
    for r in rows:
        cells = [f"`{r['label']}`", str(r["runs"]),
                 fmt(r["wall_median_s"], ".3f"),
                 (fmt(r["wall_min_s"], ".3f") + ".." +
                  fmt(r["wall_max_s"], ".3f")) if r["runs"] else "-",
                 fmt(r["wall_ratio"], ".3f") + ("x" if r["wall_ratio"] else ""),
                 fmt(r["cpu_median_s"], ".3f"),
                 fmt(r["cpu_ratio"], ".3f") + ("x" if r["cpu_ratio"] else ""),
                 fmt(r["maxrss_median_mib"], ".1f"),
                 fmt(r["rss_ratio"], ".2f") + ("x" if r["rss_ratio"] else "")]
        if has_base:
            cells.insert(1, "-" if r["against"] == r["label"] else f"`{r['against']}`")
        if has_ev:
            cells.append(fmt(r["overhead_ns_per_call"], ".0f"))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def main():
    if len(sys.argv) not in (4, 5):
        sys.exit(__doc__)
    spec, scratch, results = sys.argv[1:4]
    header = open(sys.argv[4]).read() if len(sys.argv) == 5 else ""
    groups = parse_spec(spec)
    # BENCH_ONLY=NAME,...: only these groups (e.g. allocators).
    only = os.environ.get("BENCH_ONLY")
    if only:
        groups = [g for g in groups if g["name"] in only.split(",")]
    logdir = os.path.dirname(os.path.abspath(results))
    os.makedirs(scratch, exist_ok=True)
    t0 = time.time()
    for g in groups:
        run_group(g, scratch, logdir)
    elapsed = time.time() - t0

    md = [header.rstrip(), ""] if header else []
    md.append(f"Measuring took {elapsed:.0f} s.")
    md.append("")
    out = {}
    failed = 0
    for g in groups:
        rows = summarize(g)
        out[g["name"]] = {"title": g["title"], "rows": rows,
                          "events": g["events"], "notes": g["notes"]}
        md += [f"## {g['name']}: {g['title']}", ""]
        md += table(g, rows)
        md.append("")
        md.append("Commands (baseline first):" if not g["base"] else
                  "Commands (each allocator's untraced run first):")
        md.append("")
        for r in rows:
            md.append(f"- `{r['label']}`: `{r['cmd']}`")
        for r in rows:
            for f in sorted(set(r["failures"])):
                failed += 1
                md.append(f"- **{r['label']} failed** "
                          f"({r['failures'].count(f)}x): {f}")
        if g["events"]:
            md.append(f"- allocator calls per run (for ns/call): "
                      f"about {g['events']:.0f}")
        for n in g["notes"]:
            md.append(f"- {n}")
        md.append("")
    text = "\n".join(md) + "\n"
    with open(results, "w") as f:
        f.write(text)
    with open(os.path.splitext(results)[0] + ".json", "w") as f:
        json.dump(out, f, indent=1)
    print()
    print(text)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

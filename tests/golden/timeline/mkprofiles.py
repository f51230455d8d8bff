#!/usr/bin/env python3
"""Fixed profiles for the timeline and HTML golden tests, written from
docs/FORMAT.md by a second writer (not memtap's), so the goldens also check
that the reader follows the documented format.

usage: mkprofiles.py DIR          writes DIR/golden.<pid>.<seq>.mtp
       mkprofiles.py DIR large    DIR/large.mtp: 10,000 call sites (20 frames
                                  each, 1000 distinct functions) and 2048 points
       mkprofiles.py DIR evil     DIR/evil.mtp: a command and frames with
                                  markup in them ("</script>", quotes, &)

A prefork-like server: parent 100 (flat), child 101 whose in-use grows on
every point (the streaming leak of seeds/002, with call sites), child 102
whose per-request memory comes back (flat), and process 200 from an older
writer: two interval dumps and no timeline record (drawn from its
snapshots).  Call sites point into a library that does not exist, so they
symbolize the same everywhere (libapp.so+0x...)."""
import struct
import sys
import zlib

MAGIC = b"\x89MTPROF\n"
T0 = 1767225600 * 10**9  # 2026-01-01 00:00:00 UTC
PAGE = 4096


def s(text):
    b = text.encode()
    return struct.pack("<I", len(b)) + b


def rec(tag, payload):
    return struct.pack("<II", tag, len(payload)) + payload


def profile(pid, ppid, seq, reason, start, dump, command, funcs, totals, sites=(), maps=(), timeline=None,
            parent_start=0, end=None):
    out = MAGIC + struct.pack("<II", 1, 16)
    out += rec(1, struct.pack("<IIIIII", pid, ppid, 1000, seq, reason, 1) + struct.pack("<QQQ", 7, start, dump)
               + s(command) + s("/usr/sbin/" + command.split()[0]))
    for name, kind, calls, nbytes, hist in funcs:
        body = s(name) + struct.pack("<IQQQI", kind, calls, nbytes, 0, len(hist))
        for k, v in hist:
            body += struct.pack("<IQ", k, v)
        out += rec(2, body)
    out += rec(3, struct.pack("<QQqQ", *totals))
    if sites:
        out += rec(4, struct.pack("<QQ", 1, 0))
    for start_, end_, off, path in maps:
        out += rec(6, struct.pack("<QQQII", start_, end_, off, 5, 0) + s(path))
    for fn, ao, ab, io, ib, po, pb, frames in sites:
        out += rec(5, struct.pack("<IQQQQQQI", fn, ao, ab, io, ib, po, pb, len(frames))
                   + b"".join(struct.pack("<Q", f) for f in frames))
    if end:
        out += rec(8, struct.pack("<Ii", *end))
    if timeline:
        interval, pts = timeline
        body = struct.pack("<QQIII", interval, parent_start, 0, len(pts), 96)
        for p in pts:
            body += struct.pack("<QQqqQQQQQQQII", *p)
        out += rec(13, body)
    crc = zlib.crc32(out) & 0xffffffff
    return out + rec(0x454E4421, struct.pack("<I", crc))


def points(n, start, step_ns, level, alloc_per, free_per):
    """N points STEP_NS apart; LEVEL(k) the in-use at point k."""
    pts = []
    for k in range(n):
        t = start + (k + 1) * step_ns
        lv = level(k)
        pts.append((t, step_ns, lv, lv, alloc_per, alloc_per // 64, free_per(k), free_per(k) // 64,
                    (300 + k) * PAGE, 0, 0, 1, 1))
    return pts


def main(d):
    step = 500 * 10**6  # --interval=0.5
    ps = T0  # the parent's start
    lib = [(0x7f0000000000, 0x7f0000100000, 0, "/nonexistent/golden/libapp.so")]
    files = {}
    # Parent: startup memory, nothing after.
    files[(100, 0)] = profile(
        100, 1, 0, 0, ps, ps + 21 * step, "httpd -k start",
        [("malloc", 0, 40, 40960, [(11, 40)]), ("free", 1, 0, 0, [])], (40960, 0, 40960, 40960),
        timeline=(step, points(20, ps, step, lambda k: 40960, 0, lambda k: 0)), end=(1, 0))
    cs = ps + step // 2
    # Child 101: a 4 KiB brigade per read, never freed (seeds/002).
    grow = lambda k: 40960 + 4096 * 8 * (k + 1)
    files[(101, 0)] = profile(
        101, 100, 0, 0, cs, cs + 19 * step, "httpd -k start",
        [("malloc", 0, 1560, 40960 + 4096 * 8 * 18 + 64 * 1400, [(7, 1400), (13, 160)]),
         ("free", 1, 1400, 64 * 1400, [(7, 1400)])],
        (40960 + 4096 * 8 * 18 + 64 * 1400, 64 * 1400, 40960 + 4096 * 8 * 18, 40960 + 4096 * 8 * 18),
        sites=[(0, 144, 4096 * 144, 144, 4096 * 144, 144, 4096 * 144,
                [0x7f0000001234, 0x7f0000002345, 0x7f0000003456]),
               (0, 1400, 64 * 1400, 0, 0, 8, 512, [0x7f0000001300, 0x7f0000004567, 0x7f0000003456])],
        maps=lib, timeline=(step, points(18, cs, step, grow, 4096 * 8 + 5000, lambda k: 5000)),
        parent_start=ps, end=(1, 0))
    # Child 102: per-request memory, freed.
    files[(102, 0)] = profile(
        102, 100, 0, 0, cs, cs + 19 * step, "httpd -k start",
        [("malloc", 0, 3000, 40960 + 64 * 2960, [(7, 2960)]), ("free", 1, 2960, 64 * 2960, [(7, 2960)])],
        (40960 + 64 * 2960, 64 * 2960, 40960, 41984),
        sites=[(0, 2960, 64 * 2960, 0, 0, 16, 1024, [0x7f0000001300, 0x7f0000004567, 0x7f0000003456])],
        maps=lib, timeline=(step, points(18, cs, step, lambda k: 40960 + (k % 3) * 512, 10000,
                                         lambda k: 10000 + ((k % 3) - ((k - 1) % 3)) * 0)),
        parent_start=ps, end=(1, 0))
    # Process 200, an older writer: two interval dumps, no timeline.
    s2 = ps + 2 * step
    for seq, (dt, inuse) in enumerate([(3, 100000), (6, 250000)]):
        files[(200, seq)] = profile(
            200, 1, seq, 4, s2, s2 + dt * step, "worker --batch",
            [("malloc", 0, 10 * (seq + 1), inuse, [(17, 10 * (seq + 1))])], (inuse, 0, inuse, inuse))
    for (pid, seq), data in files.items():
        with open("%s/golden.%d.%d.mtp" % (d, pid, seq), "wb") as f:
            f.write(data)


def large(d):
    """A large profile: what a busy server's --stacks --interval gives."""
    step = 100 * 10**6
    # One real ELF file as the mapping would make every frame symbolize to
    # the same few names; a missing one keeps frames distinct.
    maps = [(0x7f0000000000 + m * 0x100000, 0x7f0000100000 + m * 0x100000, 0, "/nonexistent/golden/lib%d.so" % m)
            for m in range(10)]
    sites = []
    for k in range(10000):
        frames = [0x7f0000000000 + ((k * 7919 + j * 104729) % 1000) * 0x1000 + j * 16 for j in range(19)]
        frames.append(0x7f0000000000 + 0x123)
        sites.append((0, 10 + k % 50, (10 + k % 50) * 64, k % 5, (k % 5) * 64, k % 3, (k % 3) * 64, frames))
    pts = points(2048, T0, step, lambda k: 1000000 + 1000 * (k % 100), 64000, lambda k: 63000)
    with open("%s/large.mtp" % d, "wb") as f:
        f.write(profile(300, 1, 0, 0, T0, T0 + 2049 * step, "bigserver --threads 8",
                        [("malloc", 0, 350000, 22400000, [(7, 350000)]), ("free", 1, 340000, 21760000, [(7, 340000)])],
                        (22400000, 21760000, 640000, 2000000), sites=sites, maps=maps, timeline=(step, pts),
                        end=(1, 0)))


def evil(d):
    cs = T0
    with open("%s/evil.mtp" % d, "wb") as f:
        f.write(profile(400, 1, 0, 0, cs, cs + 3 * 10**9, "</script><script>alert(1)</script> \"q\" & <!-- x",
                        [("malloc", 0, 3, 300, [(7, 3)])], (300, 0, 300, 300),
                        sites=[(0, 3, 300, 3, 300, 3, 300, [0x7f0000001234])],
                        maps=[(0x7f0000000000, 0x7f0000100000, 0, "/nonexistent/</script>&\"'.so")],
                        timeline=(10**9, points(3, cs, 10**9, lambda k: 100 * (k + 1), 100, lambda k: 0)),
                        end=(1, 0)))


if __name__ == "__main__":
    {"large": large, "evil": evil}.get(sys.argv[2] if len(sys.argv) > 2 else "", main)(sys.argv[1])

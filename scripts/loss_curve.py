#!/usr/bin/python3
"""Loss curve of a `moe train` run as a self-contained SVG, from its TensorBoard event files.

Usage: /usr/bin/python3 scripts/loss_curve.py EVENTS_FILE_OR_TB_DIR OUT.svg [--title T] [--smoothing S]

EVENTS_FILE_OR_TB_DIR: one events.out.tfevents.* file, or a directory holding them (OUT/tb of a run,
or OUT itself: a tb/ subdirectory is used when there is one). All the files of a directory are read in
name order (a resumed run writes a new file); where one step was logged twice (steps redone after a
resume), the later record wins.

Draws train/loss (raw as a faint line, plus an exponential moving average with TensorBoard's debiasing,
--smoothing 0..1, default 0.6), val/loss (points and line) and, in a strip below sharing the step axis,
train/aux_loss when it is not identically zero. Prints the final values.

Standard library only. Records are TFRecord frames (u64 length, u32 masked CRC-32C of the length, data,
u32 masked CRC-32C of the data); both CRCs are verified, and a mismatch is an error. A last record cut
short (a run still writing) is ignored with a note. Event protobufs are decoded by hand for the fields
src/train/tb_events.h writes: Event{wall_time=1 double, step=2 int64, summary=5}, Summary{value=1},
Value{tag=1, simple_value=2 float}; scalars written as tensors (Value.tensor=8, TensorProto float_val=5 /
double_val=6 / tensor_content=4), as newer TensorBoard writers do, are read too.
"""
import argparse
import math
import os
import struct
import sys
from xml.sax.saxutils import escape

# ---- CRC-32C (Castagnoli), reflected polynomial 0x82F63B78 ------------------------------------------


def _crc_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC_TABLE = _crc_table()


def crc32c(data):
    crc = 0xFFFFFFFF
    t = _CRC_TABLE
    for b in data:
        crc = t[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data):
    crc = crc32c(data)
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


assert crc32c(b"123456789") == 0xE3069283  # the standard check value

# ---- TFRecord + protobuf ----------------------------------------------------------------------------


class EventFileError(Exception):
    pass


def read_records(path):
    """Yields the data of each record of a TFRecord file, verifying both CRCs."""
    with open(path, "rb") as f:
        buf = f.read()
    pos, n = 0, len(buf)
    while pos < n:
        if n - pos < 12:
            print(f"note: {path}: {n - pos} trailing bytes at offset {pos} (a record cut short), ignored",
                  file=sys.stderr)
            return
        header = buf[pos:pos + 8]
        (length,) = struct.unpack("<Q", header)
        (hcrc,) = struct.unpack("<I", buf[pos + 8:pos + 12])
        if masked_crc32c(header) != hcrc:
            raise EventFileError(f"{path}: offset {pos}: length CRC mismatch (corrupt file)")
        if n - pos - 12 < length + 4:
            print(f"note: {path}: last record at offset {pos} is cut short ({length} bytes announced), ignored",
                  file=sys.stderr)
            return
        data = buf[pos + 12:pos + 12 + length]
        (dcrc,) = struct.unpack("<I", buf[pos + 12 + length:pos + 16 + length])
        if masked_crc32c(data) != dcrc:
            raise EventFileError(f"{path}: offset {pos}: data CRC mismatch (corrupt record)")
        yield data
        pos += 16 + length


def _varint(b, i):
    shift = result = 0
    while True:
        if i >= len(b):
            raise EventFileError("truncated varint")
        c = b[i]
        i += 1
        result |= (c & 0x7F) << shift
        if not c & 0x80:
            return result, i
        shift += 7
        if shift > 63:
            raise EventFileError("varint too long")


def fields(b):
    """Yields (field number, wire type, value) of a serialized message: ints for varints, bytes otherwise."""
    i, n = 0, len(b)
    while i < n:
        key, i = _varint(b, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = _varint(b, i)
        elif wt == 1:
            v, i = b[i:i + 8], i + 8
        elif wt == 2:
            ln, i = _varint(b, i)
            v, i = b[i:i + ln], i + ln
        elif wt == 5:
            v, i = b[i:i + 4], i + 4
        else:
            raise EventFileError(f"unsupported wire type {wt}")
        if i > n:
            raise EventFileError("truncated field")
        yield num, wt, v


def _tensor_scalar(b):
    """The single value of a scalar TensorProto, or None."""
    for num, wt, v in fields(b):
        if num == 5:  # float_val, packed or not
            return struct.unpack_from("<f", v)[0] if len(v) >= 4 else None
        if num == 6:  # double_val
            return struct.unpack_from("<d", v)[0] if len(v) >= 8 else None
        if num == 4 and len(v) in (4, 8):  # tensor_content of one float or double
            return struct.unpack("<f" if len(v) == 4 else "<d", v)[0]
    return None


def parse_event(data):
    """(wall_time, step, [(tag, value)]) of one Event; only scalar values are returned."""
    wall, step, scalars = 0.0, 0, []
    for num, wt, v in fields(data):
        if num == 1 and wt == 1:
            wall = struct.unpack("<d", v)[0]
        elif num == 2 and wt == 0:
            step = v - (1 << 64) if v >= 1 << 63 else v
        elif num == 5 and wt == 2:
            for snum, swt, sv in fields(v):
                if snum != 1 or swt != 2:
                    continue
                tag, val = None, None
                for vnum, vwt, vv in fields(sv):
                    if vnum == 1 and vwt == 2:
                        tag = vv.decode("utf-8", "replace")
                    elif vnum == 2 and vwt == 5:
                        val = struct.unpack("<f", vv)[0]
                    elif vnum == 8 and vwt == 2:
                        val = _tensor_scalar(vv)
                if tag is not None and val is not None:
                    scalars.append((tag, val))
    return wall, step, scalars


def event_files(arg):
    if os.path.isdir(arg):
        d = os.path.join(arg, "tb") if os.path.isdir(os.path.join(arg, "tb")) else arg
        files = sorted(os.path.join(d, f) for f in os.listdir(d) if "tfevents" in f)
        if not files:
            raise EventFileError(f"{d}: no events.out.tfevents.* file")
        return files
    if not os.path.exists(arg):
        raise EventFileError(f"{arg}: no such file or directory")
    return [arg]


def load_scalars(files, tags):
    """{tag: [(step, value)] sorted by step}; a step logged twice keeps the later record (by wall time)."""
    series = {t: {} for t in tags}
    n_events = 0
    for seq, path in enumerate(files):
        for rec_no, data in enumerate(read_records(path)):
            try:
                wall, step, scalars = parse_event(data)
            except (EventFileError, struct.error) as e:
                raise EventFileError(f"{path}: record {rec_no}: bad Event protobuf ({e})")
            n_events += 1
            for tag, val in scalars:
                if tag in series:
                    key = (wall, seq, rec_no)
                    old = series[tag].get(step)
                    if old is None or key >= old[0]:
                        series[tag][step] = (key, val)
    return {t: sorted((s, kv[1]) for s, kv in d.items()) for t, d in series.items()}, n_events


def ema(values, weight):
    """TensorBoard's smoothing: debiased exponential moving average; non-finite values pass through."""
    out, last, num = [], 0.0, 0
    for v in values:
        if not math.isfinite(v):
            out.append(v)
            continue
        last = last * weight + (1 - weight) * v
        num += 1
        debias = 1 - weight ** num if weight < 1 else 1
        out.append(last / debias if debias > 0 else v)
    return out


# ---- SVG --------------------------------------------------------------------------------------------


def nice_ticks(lo, hi, target=6, integer=False):
    """Round tick values covering [lo, hi] (steps of 1, 2, 2.5 or 5 times a power of ten)."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        lo, hi = 0.0, 1.0
    if hi <= lo:
        pad = abs(lo) * 0.05 or 0.5
        lo, hi = lo - pad, hi + pad
    raw = (hi - lo) / max(1, target)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    if integer:
        step = max(1, round(step))
    first = math.floor(lo / step + 1e-9) * step
    last = math.ceil(hi / step - 1e-9) * step
    ticks, k = [], 0
    while first + k * step <= last + step * 1e-9:
        ticks.append(first + k * step)
        k += 1
    return ticks, step


def fmt_tick(v, step):
    """A tick label with just the decimals the tick spacing needs."""
    if abs(v) < step * 1e-6:
        return "0"
    if abs(v) >= 1e6 or step < 1e-4:
        return f"{v:.3g}"
    decimals = max(0, -math.floor(math.log10(step) + 1e-9))
    if abs(round(step * 10 ** decimals) - step * 10 ** decimals) > 1e-6:  # e.g. 0.25
        decimals += 1
    return f"{v:.{decimals}f}"


def fmt_val(v):
    return "n/a" if v is None else f"{v:.4f}" if abs(v) >= 1e-3 or v == 0 else f"{v:.3e}"


class Panel:
    """A plot area with linear x/y scales and its axes."""

    def __init__(self, x0, y0, w, h, xlim, ylim, xticks, yticks):
        self.x0, self.y0, self.w, self.h = x0, y0, w, h
        self.xlim, self.ylim = xlim, ylim
        self.xticks, self.yticks = xticks, yticks

    def px(self, x):
        a, b = self.xlim
        return self.x0 + (x - a) / (b - a) * self.w if b > a else self.x0 + self.w / 2

    def py(self, y):
        a, b = self.ylim
        return self.y0 + self.h - (y - a) / (b - a) * self.h if b > a else self.y0 + self.h / 2

    def axes(self, out, ylabel, xlabel=None, x_tick_labels=True):
        (xt, xs), (yt, ys) = self.xticks, self.yticks
        out.append(f'<rect x="{self.x0}" y="{self.y0}" width="{self.w}" height="{self.h}" fill="#ffffff" '
                   f'stroke="#888888" stroke-width="1"/>')
        for t in yt:
            y = self.py(t)
            out.append(f'<line x1="{self.x0}" y1="{y:.1f}" x2="{self.x0 + self.w}" y2="{y:.1f}" class="grid"/>')
            out.append(f'<line x1="{self.x0 - 5}" y1="{y:.1f}" x2="{self.x0}" y2="{y:.1f}" class="tick"/>')
            out.append(f'<text x="{self.x0 - 8}" y="{y + 4:.1f}" text-anchor="end" class="lbl">'
                       f'{fmt_tick(t, ys)}</text>')
        for t in xt:
            x = self.px(t)
            out.append(f'<line x1="{x:.1f}" y1="{self.y0}" x2="{x:.1f}" y2="{self.y0 + self.h}" class="grid"/>')
            out.append(f'<line x1="{x:.1f}" y1="{self.y0 + self.h}" x2="{x:.1f}" y2="{self.y0 + self.h + 5}" '
                       f'class="tick"/>')
            if x_tick_labels:
                out.append(f'<text x="{x:.1f}" y="{self.y0 + self.h + 19}" text-anchor="middle" class="lbl">'
                           f'{fmt_tick(t, xs)}</text>')
        cy = self.y0 + self.h / 2
        out.append(f'<text x="{self.x0 - 52}" y="{cy:.1f}" text-anchor="middle" class="axis" '
                   f'transform="rotate(-90 {self.x0 - 52} {cy:.1f})">{escape(ylabel)}</text>')
        if xlabel:
            out.append(f'<text x="{self.x0 + self.w / 2:.1f}" y="{self.y0 + self.h + 40}" text-anchor="middle" '
                       f'class="axis">{escape(xlabel)}</text>')

    def polyline(self, out, pts, color, width, opacity=1.0, dash=None):
        """Draws pts (step, value), breaking the line at non-finite values; clipped to the panel."""
        runs, cur = [], []
        for x, y in pts:
            if math.isfinite(y):
                cur.append(f"{self.px(x):.1f},{self.py(y):.1f}")
            elif cur:
                runs.append(cur)
                cur = []
        if cur:
            runs.append(cur)
        extra = f' stroke-dasharray="{dash}"' if dash else ""
        for r in runs:
            if len(r) == 1:
                x, y = r[0].split(",")
                out.append(f'<circle cx="{x}" cy="{y}" r="{width}" fill="{color}" fill-opacity="{opacity}"/>')
            else:
                out.append(f'<polyline points="{" ".join(r)}" fill="none" stroke="{color}" stroke-width="{width}" '
                           f'stroke-opacity="{opacity}" stroke-linejoin="round" stroke-linecap="round"{extra} '
                           f'clip-path="url(#{self.clip_id})"/>')

    def clip(self, out, ident):
        self.clip_id = ident
        out.append(f'<clipPath id="{ident}"><rect x="{self.x0}" y="{self.y0 - 3}" width="{self.w}" '
                   f'height="{self.h + 6}"/></clipPath>')


def value_range(*seqs):
    vals = [v for s in seqs for _, v in s if math.isfinite(v)]
    return (min(vals), max(vals)) if vals else (0.0, 1.0)


C_TRAIN, C_VAL, C_AUX = "#1f77b4", "#d62728", "#2ca02c"


def render_svg(train, val, aux, title, smoothing, subtitle):
    W, ML, MR, MT = 900, 80, 30, 64
    main_h = 360
    show_aux = any(math.isfinite(v) and v != 0 for _, v in aux)
    aux_h, gap = (110, 34) if show_aux else (0, 0)
    H = MT + main_h + gap + aux_h + 58
    pw = W - ML - MR

    steps = [s for seq in (train, val, aux) for s, _ in seq]
    s_lo, s_hi = (min(steps), max(steps)) if steps else (0, 1)
    xt = nice_ticks(s_lo, s_hi, 8, integer=True)
    xlim = (min(s_lo, xt[0][0]) if s_lo >= 0 else s_lo, max(s_hi, 1))
    xt = ([t for t in xt[0] if xlim[0] - 1e-9 <= t <= xlim[1] + 1e-9], xt[1])
    smoothed = list(zip([s for s, _ in train], ema([v for _, v in train], smoothing)))

    lo, hi = value_range(train, val)
    yt = nice_ticks(lo, hi, 7)
    main = Panel(ML, MT, pw, main_h, xlim, (yt[0][0], yt[0][-1]), xt, yt)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
           f'font-family="Helvetica, Arial, sans-serif">',
           '<style>.grid{stroke:#e6e6e6;stroke-width:1}.tick{stroke:#888888;stroke-width:1}'
           '.lbl{font-size:12px;fill:#444444}.axis{font-size:13px;fill:#222222}'
           '.title{font-size:17px;font-weight:bold;fill:#111111}.sub{font-size:12px;fill:#666666}'
           '.leg{font-size:12.5px;fill:#222222}</style>',
           f'<rect width="{W}" height="{H}" fill="#fafafa"/>',
           f'<text x="{ML}" y="26" class="title">{escape(title)}</text>',
           f'<text x="{ML}" y="45" class="sub">{escape(subtitle)}</text>']
    main.clip(out, "clip-main")
    main.axes(out, "loss", None if show_aux else "step")
    if train:
        main.polyline(out, train, C_TRAIN, 1.0, opacity=0.35)
        main.polyline(out, smoothed, C_TRAIN, 2.2)
    if val:
        main.polyline(out, val, C_VAL, 1.6, dash="5,3")
        for s, v in val:
            if math.isfinite(v):
                out.append(f'<circle cx="{main.px(s):.1f}" cy="{main.py(v):.1f}" r="3.6" fill="{C_VAL}" '
                           f'stroke="#ffffff" stroke-width="1"/>')

    # legend (top right, inside the panel)
    items = []
    if train:
        items.append(("line", C_TRAIN, 0.35, 1.0, "train loss (raw)"))
        items.append(("line", C_TRAIN, 1.0, 2.2, f"train loss (EMA {smoothing:g})"))
    if val:
        items.append(("point", C_VAL, 1.0, 1.6, "val loss"))
    if items:
        lw, lh = 190, 10 + 19 * len(items)
        lx, ly = ML + pw - lw - 10, MT + 10
        out.append(f'<rect x="{lx}" y="{ly}" width="{lw}" height="{lh}" rx="4" fill="#ffffff" fill-opacity="0.92" '
                   f'stroke="#cccccc"/>')
        for k, (kind, color, op, width, label) in enumerate(items):
            y = ly + 15 + 19 * k
            dash = ' stroke-dasharray="5,3"' if kind == "point" else ""
            out.append(f'<line x1="{lx + 10}" y1="{y}" x2="{lx + 40}" y2="{y}" stroke="{color}" '
                       f'stroke-width="{width}" stroke-opacity="{op}"{dash}/>')
            if kind == "point":
                out.append(f'<circle cx="{lx + 25}" cy="{y}" r="3.6" fill="{color}" stroke="#ffffff"/>')
            out.append(f'<text x="{lx + 48}" y="{y + 4}" class="leg">{escape(label)}</text>')

    if show_aux:
        alo, ahi = value_range(aux)
        at = nice_ticks(alo, ahi, 3)
        ap = Panel(ML, MT + main_h + gap, pw, aux_h, xlim, (at[0][0], at[0][-1]), xt, at)
        ap.clip(out, "clip-aux")
        ap.axes(out, "aux loss", "step")
        ap.polyline(out, aux, C_AUX, 1.0, opacity=0.3)
        ap.polyline(out, list(zip([s for s, _ in aux], ema([v for _, v in aux], smoothing))), C_AUX, 1.8)
        out.append(f'<text x="{ML + pw - 8}" y="{ap.y0 + 16}" text-anchor="end" class="leg">train aux loss '
                   f'(raw, EMA)</text>')
    if not train and not val:
        out.append(f'<text x="{ML + pw / 2}" y="{MT + main_h / 2}" text-anchor="middle" class="axis">'
                   f'no train/loss or val/loss scalars</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def last_finite(seq):
    for s, v in reversed(seq):
        if math.isfinite(v):
            return s, v
    return None, None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("events", help="an events.out.tfevents.* file, or a directory of them (a run's tb/ or out dir)")
    ap.add_argument("out", help="the SVG to write")
    ap.add_argument("--title", help="chart title (default: the run directory)")
    ap.add_argument("--smoothing", type=float, default=0.6, help="EMA weight in [0, 1) (default 0.6, as TensorBoard)")
    a = ap.parse_args()
    if not 0 <= a.smoothing < 1:
        ap.error("--smoothing must be in [0, 1)")
    try:
        files = event_files(a.events)
        data, n_events = load_scalars(files, ("train/loss", "val/loss", "train/aux_loss"))
    except (EventFileError, OSError) as e:
        sys.exit(f"loss_curve: {e}")
    train, val, aux = data["train/loss"], data["val/loss"], data["train/aux_loss"]
    if not train and not val:
        sys.exit(f"loss_curve: {', '.join(files)}: no train/loss or val/loss scalars ({n_events} events)")

    title = a.title
    if title is None:
        d = os.path.abspath(a.events if os.path.isdir(a.events) else os.path.dirname(a.events))
        if os.path.basename(d) == "tb":
            d = os.path.dirname(d)
        title = f"moe train: {os.path.basename(d) or d}"
    ts, tv = last_finite(train)
    vs, vv = last_finite(val)
    finite_val = [(s, v) for s, v in val if math.isfinite(v)]
    best = min(finite_val, key=lambda p: p[1]) if finite_val else None
    sub = f"{len(files)} event file{'s' if len(files) != 1 else ''}, {len(train)} train points"
    if ts is not None:
        sub += f"; final train loss {tv:.4f} (step {ts})"
    if vs is not None:
        sub += f"; final val loss {vv:.4f} (step {vs})"
    if best is not None and best[0] != vs:
        sub += f"; best val {best[1]:.4f} (step {best[0]})"
    svg = render_svg(train, val, aux, title, a.smoothing, sub)
    with open(a.out, "w", encoding="utf-8") as f:
        f.write(svg)

    sm = ema([v for _, v in train], a.smoothing)
    sm_last = next((v for v in reversed(sm) if math.isfinite(v)), None)
    as_, av = last_finite(aux)
    print(f"events: {len(files)} file(s), {n_events} records, CRCs ok")
    print(f"train/loss:     {len(train)} points, final {fmt_val(tv)} at step {ts}, smoothed {fmt_val(sm_last)}")
    print(f"val/loss:       {len(val)} points, final {fmt_val(vv)} at step {vs}"
          + (f", best {best[1]:.4f} at step {best[0]}" if best else ""))
    print(f"train/aux_loss: {len(aux)} points, final {fmt_val(av)} at step {as_}")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()

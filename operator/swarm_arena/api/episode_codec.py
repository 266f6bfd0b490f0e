"""A compact, lossless packing of episode records, for where room is short.

Without a durable store every counted record lives in the results ConfigMap and travels with a
re-submission in one environment variable (120 KiB). A JSON line per record spends most of that
on keys and on spelling numbers out: a two-policy record with its social metrics took 87-110
bytes compressed (base64; as the arena writes them, and the operator's worst-case sample). This
packing takes 37-49 and gives back exactly the records it was given (`unpack(pack(r)) == r`, key
order included):

- **Columns, not rows.** What repeats from record to record (the pairing, which policies and
  teams a record names, in which order) is one *layout*, kept once in a table; each record keeps
  its layout's index and its numbers, column by column, in little-endian binary: returns as
  float64, counts as int64, episode indices as differences from the previous record.
- **Social metrics as decimals.** They are kept to SOCIAL_SIGNIFICANT_DIGITS significant digits
  (api/report.py), so each is a small integer mantissa (int16) and a power of ten (int8); a value
  that is not such a decimal (none, or one written some other way) gets a marker and goes whole.
- **Nothing stored twice.** A team whose metrics equal one of its episode's policies' (a team of
  one policy) refers to that policy; an efficiency equal to what the record's returns give
  (`significant(Σ returns × agents / steps)` over the group's policies) is derived on read. Both
  are checked when packing, so a record where they differ keeps its own numbers.

The bytes are xz (LZMA, which models these columns better than gzip: 49 bytes a worst-case
record in base64 against 53) of a magic line, a JSON header line (layouts, column lengths) and the columns,
each column's bytes grouped by significance. `unpack` also reads what came before it, gzip of one
JSON record per line.

Standard library only: the operator's image has no numpy.
"""

from __future__ import annotations

import gzip
import json
import lzma
import sys
from array import array
from collections.abc import Sequence
from typing import Any

from swarm_arena.api.report import EpisodeRecord, EpisodeSocial, SocialMetrics, significant

MAGIC = b"swarm-arena episodes v2\n"
_GZIP = b"\x1f\x8b"
METRICS = ("efficiency", "equality", "sustainability", "peace")
_NONE = 127  # exponent markers: no value; the value is in the float64 column
_WHOLE = -128


class CodecError(ValueError):
    """Bytes that are not packed episode records (the message says what was wrong)."""


def _identical(a: float | None, b: float | None) -> bool:
    """The same value, -0.0 and nan told apart as JSON would write them."""
    return repr(a) == repr(b)


def _same_metrics(a: SocialMetrics, b: SocialMetrics) -> bool:
    return all(_identical(getattr(a, f), getattr(b, f)) for f in METRICS)


def _decimal(value: float | None, cache: dict[float, tuple[int, int] | None] | None = None) -> tuple[int, int] | None:
    """(mantissa, exponent) with float(f"{mantissa}e{exponent}") the very value, or None."""
    if value is None:
        return 0, _NONE
    if cache is not None and value:  # not 0.0 and -0.0: equal keys, different values
        if value not in cache:
            cache[value] = _decimal(value)
        return cache[value]
    text = f"{value:.4g}"
    if "n" in text:  # inf, nan
        return None
    mantissa, _, exponent = text.partition("e")
    whole, _, fraction = mantissa.partition(".")
    m, e = int(whole + fraction), (int(exponent) if exponent else 0) - len(fraction)
    while m and abs(m) < 1000:  # four digits always: a metric's power of ten then rarely changes
        m, e = m * 10, e - 1
    if not -32768 <= m <= 32767 or not -127 <= e <= 126 or not _identical(float(f"{m}e{e}"), value):
        return None  # more digits than four, out of range, or -0.0
    return m, e


def _derived_efficiency(record: EpisodeRecord, policies: Sequence[str]) -> float | None:
    if any(p not in record.returns or p not in record.agents for p in policies):
        return None
    return significant(sum(record.returns[p] * record.agents[p] for p in policies) / max(record.steps, 1))


def _team_policies(record: EpisodeRecord, team: str) -> list[str]:
    return [p for p in (record.pairing.get(team) or "").split(",") if p]


def _group_policies(record: EpisodeRecord, kind: str, name: str) -> list[str]:
    return [name] if kind == "policies" else _team_policies(record, name)


class _Columns:
    def __init__(self) -> None:
        self.episode = array("q")
        self.layout = array("q")
        self.returns = array("d")
        self.agents = array("q")
        self.steps = array("q")
        self.agent_steps = array("q")
        self.mantissa = array("h")
        self.exponent = array("b")
        self.whole = array("d")
        self.decimals: dict[float, tuple[int, int] | None] = {}

    NAMES = ("episode", "layout", "returns", "agents", "steps", "agent_steps", "mantissa", "exponent", "whole")

    def put_metric(self, value: float | None) -> None:
        decimal = _decimal(value, self.decimals)
        if decimal is None:
            self.mantissa.append(0)
            self.exponent.append(_WHOLE)
            self.whole.append(float(value))  # type: ignore[arg-type]
        else:
            self.mantissa.append(decimal[0])
            self.exponent.append(decimal[1])

    def to_bytes(self) -> tuple[list[int], bytes]:
        """Each column little-endian, its bytes grouped by significance (all first bytes, then all
        second bytes, ...): a number's high bytes vary little and compress well apart from the low ones."""
        parts = []
        for name in self.NAMES:
            column = getattr(self, name)
            if sys.byteorder == "big":
                column = array(column.typecode, column)
                column.byteswap()
            raw, size = column.tobytes(), column.itemsize
            parts.extend(raw[i::size] for i in range(size))
        return [len(getattr(self, n)) for n in self.NAMES], b"".join(parts)

    def from_bytes(self, lengths: Sequence[int], body: bytes) -> None:
        offset = 0
        for name, length in zip(self.NAMES, lengths, strict=True):
            column = getattr(self, name)
            size = column.itemsize
            planes = body[offset : offset + length * size]
            if len(planes) != length * size:
                raise CodecError(f"episode records: column {name} is cut short")
            raw = bytearray(length * size)
            for i in range(size):
                raw[i::size] = planes[i * length : (i + 1) * length]
            column.frombytes(bytes(raw))
            if sys.byteorder == "big":
                column.byteswap()
            offset += length * size
        if offset != len(body):
            raise CodecError(f"episode records: {len(body) - offset} bytes beyond the columns the header names")


def _layout(record: EpisodeRecord) -> tuple[Any, ...]:
    """What a record shares with others like it: its keys and which metrics are derived or shared."""
    social = None
    if record.social is not None:
        policies = list(record.social.policies)
        groups = []
        for kind, metrics in (("policies", record.social.policies), ("teams", record.social.teams)):
            for name, m in metrics.items():
                same = -1
                if kind == "teams":
                    same = next((i for i, p in enumerate(policies) if _same_metrics(record.social.policies[p], m)), -1)
                given = _derived_efficiency(record, _group_policies(record, kind, name))
                derived = same < 0 and _identical(m.efficiency, given)
                groups.append((name, same, derived))
        social = (len(policies), tuple(groups))
    return (tuple(record.pairing.items()), tuple(record.returns), tuple(record.agents), social)


def pack(records: Sequence[EpisodeRecord]) -> bytes:
    """The records, sorted by episode index, packed (the module docstring's format)."""
    layouts: dict[tuple[Any, ...], int] = {}
    columns = _Columns()
    previous = 0
    for record in sorted(records, key=lambda r: r.episode):
        layout = _layout(record)
        columns.layout.append(layouts.setdefault(layout, len(layouts)))
        columns.episode.append(record.episode - previous)
        previous = record.episode
        columns.returns.extend(record.returns.values())
        columns.agents.extend(record.agents.values())
        columns.steps.append(record.steps)
        columns.agent_steps.append(record.agent_steps)
        if record.social is None:
            continue
        metrics = [*record.social.policies.values(), *record.social.teams.values()]
        for m, (_, same, derived) in zip(metrics, layout[3][1]):
            if same >= 0:
                continue
            for field in METRICS[1:] if derived else METRICS:
                columns.put_metric(getattr(m, field))
    lengths, body = columns.to_bytes()
    header = {"layouts": [_layout_wire(layout) for layout in layouts], "columns": lengths}
    return lzma.compress(MAGIC + json.dumps(header, separators=(",", ":")).encode() + b"\n" + body,
                         format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32)


def _layout_wire(layout: tuple[Any, ...]) -> dict[str, Any]:
    pairing, returns, agents, social = layout
    wire: dict[str, Any] = {"pairing": [list(kv) for kv in pairing], "returns": list(returns), "agents": list(agents)}
    if social is not None:
        wire["social"] = {"policies": social[0], "groups": [list(g) for g in social[1]]}
    return wire


def unpack(data: bytes) -> list[EpisodeRecord]:
    """The records `pack` packed, or those of a gzip of JSON lines (the earlier format)."""
    try:
        if data.startswith(_GZIP):  # the earlier format
            text = gzip.decompress(data).decode()
            return [EpisodeRecord.model_validate_json(line) for line in text.splitlines() if line.strip()]
        raw = lzma.decompress(data, format=lzma.FORMAT_XZ)
    except (OSError, EOFError, lzma.LZMAError) as exc:
        raise CodecError(f"episode records are neither xz nor gzip data: {exc}") from None
    if not raw.startswith(MAGIC):
        raise CodecError(f"episode records do not start with {MAGIC!r}")
    head, _, body = raw[len(MAGIC) :].partition(b"\n")
    header = json.loads(head)
    columns = _Columns()
    columns.from_bytes(header["columns"], body)
    return list(_Reader(columns, header["layouts"]).records())


class _Reader:
    def __init__(self, columns: _Columns, layouts: list[dict[str, Any]]) -> None:
        self.c = columns
        self.layouts = layouts
        self.returns, self.agents = iter(columns.returns.tolist()), iter(columns.agents.tolist())
        self.metrics = zip(columns.mantissa.tolist(), columns.exponent.tolist())
        self.whole = iter(columns.whole.tolist())
        self.decimals: dict[tuple[int, int], float] = {}  # a metric's values repeat: parse each once

    def metric(self) -> float | None:
        m, e = next(self.metrics)
        if e == _NONE:
            return None
        if e == _WHOLE:
            return next(self.whole)
        value = self.decimals.get((m, e))
        if value is None:
            value = self.decimals[(m, e)] = float(f"{m}e{e}")
        return value

    def records(self) -> Any:
        episode = 0
        c = self.c
        for delta, layout_index, steps, agent_steps in zip(
            c.episode.tolist(), c.layout.tolist(), c.steps.tolist(), c.agent_steps.tolist(), strict=True
        ):
            layout = self.layouts[layout_index]
            episode += delta
            record = EpisodeRecord(
                episode=episode, pairing=dict(layout["pairing"]),
                returns={policy: next(self.returns) for policy in layout["returns"]},
                agents={policy: next(self.agents) for policy in layout["agents"]},
                steps=steps, agent_steps=agent_steps,
            )
            if "social" in layout:
                record.social = self.social(record, layout["social"])
            yield record

    def social(self, record: EpisodeRecord, layout: dict[str, Any]) -> EpisodeSocial:
        social = EpisodeSocial()
        policies: list[SocialMetrics] = []
        for position, (name, same, derived) in enumerate(layout["groups"]):
            kind = "policies" if position < layout["policies"] else "teams"
            if same >= 0:
                metrics = policies[same].model_copy()
            else:
                efficiency = (_derived_efficiency(record, _group_policies(record, kind, name)) if derived
                              else self.metric())
                metrics = SocialMetrics(efficiency=efficiency, equality=self.metric(),
                                        sustainability=self.metric(), peace=self.metric())
            if kind == "policies":
                policies.append(metrics)
            getattr(social, kind)[name] = metrics
        return social

"""Kept scrapes in little memory: a scrape's values in one array over a shared layout (pure).

A parsed scrape (`live.parse_exposition`) is a dict of dicts, metric name -> label key
-> value: about 100 bytes a sample, most of them the dicts and float objects. The live
scraper keeps tens of scrapes of every sidecar (scraper.py), and consecutive scrapes of
one sidecar nearly always hold the same series. So `pack` keeps the values of a scrape
in an `array('d')` (8 bytes a sample) and the names and label keys once, in a `Layout`
that every scrape of the target with the same series shares (a scrape whose series
changed, e.g. a first 503, gets a new layout, which the next scrapes then share).
A layout's label keys are rebuilt from shared parts: each (label, value) pair once per
layout, its strings interned (shared by every sidecar's layouts); the labels of a
parse are most of its memory (about 1 KiB a sample: the same few pairs repeated over a
page's histograms). `PackedSamples` reads like the dict it replaces: `samples.get(name)` gives
{label key: value}, built when asked (the figures ask a few times per scrape interval).
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Iterator, Mapping

LabelKey = tuple[tuple[str, str], ...]
Series = Mapping[LabelKey, float]
SampleMap = Mapping[str, Series]


class Layout:
    """Each metric's label keys, in order, and where its values start in the array."""

    __slots__ = ("index", "size")

    def __init__(self, samples: SampleMap) -> None:
        self.index: dict[str, tuple[int, tuple[LabelKey, ...]]] = {}
        pairs: dict[tuple[str, str], tuple[str, str]] = {}

        def shared(key: LabelKey) -> LabelKey:
            out = []
            for pair in key:
                kept = pairs.get(pair)
                if kept is None:
                    kept = pairs[pair] = (sys.intern(pair[0]), sys.intern(pair[1]))
                out.append(kept)
            return tuple(out)

        start = 0
        for name, series in samples.items():
            keys = tuple(shared(key) for key in series)
            self.index[sys.intern(name)] = (start, keys)
            start += len(keys)
        self.size = start

    def fits(self, samples: SampleMap) -> bool:
        """Whether `samples` has exactly this layout's metrics and label keys."""
        if len(samples) != len(self.index):
            return False
        for name, series in samples.items():
            entry = self.index.get(name)
            if entry is None or len(entry[1]) != len(series):
                return False
            if any(key not in series for key in entry[1]):
                return False
        return True

    def values_of(self, samples: SampleMap) -> array[float]:
        """The values of `samples` (which `fits`) in this layout's order."""
        out = array("d")
        for name, (_, keys) in self.index.items():
            series = samples[name]
            out.extend(series[key] for key in keys)
        return out


class PackedSamples(Mapping[str, dict[LabelKey, float]]):
    """A scrape's samples: read-only, `get(name)` -> {label key: value}."""

    __slots__ = ("data", "layout")

    def __init__(self, layout: Layout, values: array[float]) -> None:
        self.layout = layout
        self.data = values

    def __getitem__(self, name: str) -> dict[LabelKey, float]:
        start, keys = self.layout.index[name]
        return dict(zip(keys, self.data[start : start + len(keys)], strict=True))

    def __iter__(self) -> Iterator[str]:
        return iter(self.layout.index)

    def __len__(self) -> int:
        return len(self.layout.index)

    def __contains__(self, name: object) -> bool:
        return name in self.layout.index


def pack(samples: SampleMap, previous: SampleMap | None = None) -> PackedSamples:
    """`samples` packed, sharing `previous`'s layout (a PackedSamples of the same target)
    when the series are the same."""
    if isinstance(previous, PackedSamples) and previous.layout.fits(samples):
        layout = previous.layout
    else:
        layout = Layout(samples)
    return PackedSamples(layout, layout.values_of(samples))

from collections import Counter

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import transforms.core.packing as packing
from transforms.core.overheads import Overheads
from transforms.core.packing import KeyPacker, Measured, PackSettings, order_records
from transforms.core.randomness import HashStream
from transforms.core.records import Record
from transforms.core.rules import load_rules
from transforms.core.strategies import STRATEGIES, compose
from transforms.core.wrap import WRAP_MODES, draw_group_size

RULES = load_rules()
WORDS = [
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "a",
    "lazy",
    "dog",
    "while",
    "seven",
    "wizards",
    "quietly",
    "hex",
    "jumbo",
    "cakes",
]


def make_records(lengths, seed=0):
    records = []
    for i, (a, b) in enumerate(lengths):
        prompt = " ".join(WORDS[(seed + i + k) % len(WORDS)] for k in range(a))
        output = " ".join(WORDS[(seed * 7 + i + k) % len(WORDS)] for k in range(b))
        records.append(Record(f"r{i}", f"Do {i}: {prompt}", "", f"Answer {i}: {output}", f"f:{i}"))
    return records


def measure(records, lengths):
    counts = lengths.count([(r.prompt, r.output) for r in records])
    return [Measured.of(r, n) for r, n in zip(records, counts)]


def check_invariants(samples, measured, pack_settings, lengths):
    placed = Counter(source for sample in samples for source in sample.sources)
    assert placed == Counter(m.record.id for m in measured), "every record in exactly one sample"
    exact = lengths.count([(s.instruction, s.output) for s in samples])
    for sample, n_tokens in zip(samples, exact):
        assert sample.n_tokens == n_tokens, "n_tokens is the exact count of the final text"
        assert n_tokens <= pack_settings.max_length, "the budget holds"
        assert sorted(sample.response_order + sample.masked) == sorted(sample.sources)
        assert sample.group_size == len(sample.sources)
        if pack_settings.wrap_mode != "max_length":
            assert sample.group_size <= pack_settings.wrap_max


def measure_with_parts(records, lengths):
    """Measured records with their Parts, as the pipeline measures them."""
    measured = lengths.measure([(r.prompt, r.output) for r in records])
    return [Measured.of(r, n, prompt_part, output_part) for r, (n, prompt_part, output_part) in zip(records, measured)]


def check_groups_are_full(samples, measured, pack_settings, lengths, epoch, key):
    """No group ends before its drawn size while the next record, composed with it, would still fit."""
    first = 0
    for sample in samples:
        group, end = int(sample.id.rsplit("-g", 1)[1]), first + sample.group_size
        size = HashStream(pack_settings.seed, epoch, key, group, "size")
        target = draw_group_size(pack_settings.wrap_mode, pack_settings.wrap_max, size)
        if end < len(measured) and (target is None or sample.group_size < target):
            taken = measured[first : end + 1]
            stream = HashStream(pack_settings.seed, epoch, key, group, "compose")
            c = compose([m.prompt for m in taken], [m.output for m in taken], pack_settings.strategy, RULES, stream)
            assert lengths.count([(c.instruction, c.output)])[0] > pack_settings.max_length, sample.id
        first = end


record_lengths = st.lists(st.tuples(st.integers(1, 60), st.integers(1, 80)), min_size=0, max_size=60)
packing_cases = {  # with a budget: every input of KeyPacker
    "lengths_in": record_lengths,
    "mode": st.sampled_from(WRAP_MODES),
    "wrap_max": st.integers(1, 12),
    "strategy": st.sampled_from(STRATEGIES),
    "seed": st.integers(0, 1000),
}


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(max_length=st.integers(200, 1200), **packing_cases)
def test_every_record_lands_in_exactly_one_sample_within_budget(
    quicktok_lengths, lengths_in, mode, wrap_max, max_length, strategy, seed
):
    pack_settings = PackSettings(seed, strategy, mode, wrap_max, max_length)
    measured = [m for m in measure(make_records(lengths_in, seed), quicktok_lengths) if m.n_tokens <= max_length]
    packer = KeyPacker(pack_settings, RULES, quicktok_lengths, Overheads.measure(quicktok_lengths, RULES))
    samples = packer.pack(measured, epoch=1, key=3)
    check_invariants(samples, measured, pack_settings, quicktok_lengths)
    assert samples == packer.pack(measured, epoch=1, key=3), "deterministic"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lengths_in=record_lengths, max_length=st.integers(150, 600), seed=st.integers(0, 1000))
def test_optimistic_estimates_are_caught_by_the_exact_count(quicktok_lengths, lengths_in, max_length, seed):
    # Zero overheads make every estimate too low, so groups overflow and must shrink.
    pack_settings = PackSettings(seed, "both", "max_length", 10, max_length)
    measured = [m for m in measure(make_records(lengths_in, seed), quicktok_lengths) if m.n_tokens <= max_length]
    samples = KeyPacker(pack_settings, RULES, quicktok_lengths, Overheads(template=0)).pack(measured, 0, 0)
    check_invariants(samples, measured, pack_settings, quicktok_lengths)
    check_groups_are_full(samples, measured, pack_settings, quicktok_lengths, 0, 0)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(max_length=st.integers(150, 900), **packing_cases)
# A masked response is not in the sample: only the instructions' interiors bound it from below.
@example(
    lengths_in=[(1, 1), (1, 1), (1, 1), (1, 2), (53, 80)],
    mode="uniform",
    wrap_max=3,
    max_length=150,
    strategy="mask",
    seed=0,
)
def test_no_group_ends_while_the_next_record_would_fit(
    quicktok_lengths, lengths_in, mode, wrap_max, max_length, strategy, seed
):
    pack_settings = PackSettings(seed, strategy, mode, wrap_max, max_length)
    records = measure_with_parts(make_records(lengths_in, seed), quicktok_lengths)
    measured = [m for m in records if m.n_tokens <= max_length]
    packer = KeyPacker(pack_settings, RULES, quicktok_lengths, Overheads.measure(quicktok_lengths, RULES))
    samples = packer.pack(measured, epoch=1, key=3)
    check_invariants(samples, measured, pack_settings, quicktok_lengths)
    check_groups_are_full(samples, measured, pack_settings, quicktok_lengths, 1, 3)


def test_result_does_not_depend_on_the_window(quicktok_lengths, monkeypatch):
    measured = measure(make_records([(i % 40 + 1, i % 70 + 1) for i in range(300)]), quicktok_lengths)
    pack_settings = PackSettings(5, "both", "uniform", 10, 400)
    packer = KeyPacker(pack_settings, RULES, quicktok_lengths, Overheads(template=0))
    windowed = packer.pack(measured, 0, 0)
    monkeypatch.setattr(packing, "_WINDOW", 1)
    monkeypatch.setattr(packing, "_SHRINK_CHUNK", 1)
    assert packer.pack(measured, 0, 0) == windowed


def test_group_sizes_follow_the_draws_when_the_budget_is_loose(quicktok_lengths):
    measured = measure(make_records([(3, 3)] * 6000), quicktok_lengths)
    samples = KeyPacker(
        PackSettings(0, "both", "uniform", 10, 100_000),
        RULES,
        quicktok_lengths,
        Overheads.measure(quicktok_lengths, RULES),
    ).pack(measured, 0, 0)
    sizes = Counter(sample.group_size for sample in samples[:-1])  # the last group is cut by the key's end
    assert set(sizes) == set(range(1, 11))
    assert all(abs(sizes[k] / sum(sizes.values()) - 0.1) < 0.045 for k in sizes)  # ~1,090 groups: 5 sigma


def test_a_record_too_long_for_any_format_falls_back_to_its_plain_form(quicktok_lengths):
    measured = measure(make_records([(30, 30)]), quicktok_lengths)
    budget = measured[0].n_tokens  # fits alone, but not with a meta-instruction
    samples = KeyPacker(
        PackSettings(0, "both", "uniform", 10, budget),
        RULES,
        quicktok_lengths,
        Overheads.measure(quicktok_lengths, RULES),
    ).pack(measured, 0, 0)
    assert [(s.strategy, s.instruction, s.output, s.n_tokens) for s in samples] == [
        ("primary", measured[0].record.prompt, measured[0].record.output, budget)
    ]


def test_order_records_sorts_by_sort_key_and_keeps_the_first_duplicate():
    def item(sort_key, record_id, origin):
        return sort_key, Measured.of(Record(record_id, "i", "", "o", origin), 5)

    kept, duplicates = order_records(
        [item(9, "a", "f:0"), item(1, "b", "f:10"), item(5, "b", "f:2"), item(3, "c", "e:7")]
    )
    assert [m.record.origin for m in kept] == ["e:7", "f:2", "f:0"]
    assert [m.record.origin for m in duplicates] == ["f:10"]


def test_order_records_breaks_sort_key_ties_by_id():
    def item(sort_key, record_id, index):
        return sort_key, Measured.of(Record(record_id, "i", "", "o", f"f:{index}"), 5)

    unique = [item(4, "z", 0), item(4, "y", 1), item(2, "x", 2)]
    assert [m.id for m in order_records(unique)[0]] == ["x", "y", "z"]
    with_duplicate = [*unique, item(4, "y", 3)]
    assert [(m.id, m.origin) for m in order_records(with_duplicate)[0]] == [("x", "f:2"), ("y", "f:1"), ("z", "f:0")]


def test_sample_ids_are_unique_and_name_epoch_key_group(quicktok_lengths):
    measured = measure(make_records([(2, 2)] * 50), quicktok_lengths)
    samples = KeyPacker(
        PackSettings(0, "both", "uniform", 10, 2000),
        RULES,
        quicktok_lengths,
        Overheads.measure(quicktok_lengths, RULES),
    ).pack(measured, 2, 7)
    assert [s.id for s in samples] == [f"e2-k7-g{g}" for g in range(len(samples))]

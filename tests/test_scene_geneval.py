"""GenEval suites: GenEval's real rows, generation in its proportions, and the parser round trip."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from strokeagent.scene import (
    SuiteItem,
    generate_suite,
    graph_from_item,
    load_suite,
    parse_prompt,
    write_suite,
)
from strokeagent.scene.geneval import GENEVAL_PROPORTIONS, GENEVAL_TAGS

# The first row of each tag in GenEval's prompts/evaluation_metadata.jsonl (djghosh13/geneval), verbatim.
REAL_ROWS = [
    '{"tag": "single_object", "include": [{"class": "bench", "count": 1}], "prompt": "a photo of a bench"}',
    '{"tag": "two_object", "include": [{"class": "bench", "count": 1}, {"class": "sports ball", "count": 1}], "prompt": "a photo of a bench and a sports ball"}',
    '{"tag": "counting", "include": [{"class": "clock", "count": 2}], "exclude": [{"class": "clock", "count": 3}], "prompt": "a photo of two clocks"}',
    '{"tag": "colors", "include": [{"class": "fire hydrant", "count": 1, "color": "blue"}], "prompt": "a photo of a blue fire hydrant"}',
    '{"tag": "position", "include": [{"class": "teddy bear", "count": 1}, {"class": "dog", "count": 1, "position": ["right of", 0]}], "prompt": "a photo of a dog right of a teddy bear"}',
    '{"tag": "color_attr", "include": [{"class": "wine glass", "count": 1, "color": "purple"}, {"class": "apple", "count": 1, "color": "black"}], "prompt": "a photo of a purple wine glass and a black apple"}',
]


def signature(graph) -> tuple[list[tuple], list[tuple]]:
    return (
        [(o.cls, o.count, o.color) for o in graph.objects],
        [(r.subject, r.predicate, r.object) for r in graph.relations],
    )


def test_real_rows_load_and_write_back_unchanged(tmp_path):
    path = tmp_path / "evaluation_metadata.jsonl"
    path.write_text("\n".join(REAL_ROWS) + "\n")
    items = load_suite(path)
    assert [i.tag for i in items] == list(GENEVAL_TAGS)
    write_suite(items, tmp_path / "out.jsonl")
    assert (tmp_path / "out.jsonl").read_text() == path.read_text()


def test_real_rows_parse_to_their_include():
    for line in REAL_ROWS:
        item = SuiteItem.model_validate_json(line)
        graph = parse_prompt(item.prompt)
        assert signature(graph) == signature(graph_from_item(item)), item.prompt
        assert graph.dropped == []


def test_position_row_becomes_subject_relation_anchor():
    graph = graph_from_item(SuiteItem.model_validate_json(REAL_ROWS[4]))
    assert signature(graph) == ([("dog", 1, None), ("teddy bear", 1, None)], [("o0", "right of", "o1")])


def test_counting_row_keeps_its_exclude():
    item = SuiteItem.model_validate_json(REAL_ROWS[2])
    assert item.exclude is not None and (item.exclude[0].cls, item.exclude[0].count) == ("clock", 3)


def test_extra_fields_are_preserved(tmp_path):
    row = {"tag": "colors", "include": [{"class": "cup", "count": 1, "color": "red", "note": "x"}],
           "prompt": "a photo of a red cup", "source": "mine"}  # fmt: skip
    (tmp_path / "s.jsonl").write_text(json.dumps(row) + "\n")
    write_suite(load_suite(tmp_path / "s.jsonl"), tmp_path / "t.jsonl")
    assert json.loads((tmp_path / "t.jsonl").read_text()) == row


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (["{not json"], r":2: not valid JSON"),
        (['["a list"]'], r":2: expected a JSON object, got list"),
        (
            ['{"tag": "colors", "prompt": "a photo of a cup"}'],
            r":2: not a GenEval row: include: Field required",
        ),
        (
            ['{"tag": "colors", "include": [{"count": 1}], "prompt": "p"}'],
            r":2: not a GenEval row: include.0.class",
        ),
        (
            ['{"tag": "counting", "include": [{"class": "cup", "count": "many"}], "prompt": "p"}'],
            r":2: .*count",
        ),
    ],
)
def test_malformed_rows_name_their_line(tmp_path, lines, message):
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join([REAL_ROWS[0], *lines, REAL_ROWS[1]]) + "\n")
    with pytest.raises(ValueError, match=message):
        load_suite(path)


def test_blank_lines_are_skipped(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text(REAL_ROWS[0] + "\n\n" + REAL_ROWS[1] + "\n")
    assert len(load_suite(path)) == 2


def test_proportions_match_genevals_file():
    assert GENEVAL_PROPORTIONS == {
        "single_object": 80, "two_object": 99, "counting": 80, "colors": 94, "position": 100, "color_attr": 100,
    }  # fmt: skip
    items = generate_suite(553, seed=43)
    assert Counter(i.tag for i in items) == Counter(GENEVAL_PROPORTIONS)
    single = [i.include[0].cls for i in items if i.tag == "single_object"]
    assert len(set(single)) == 80  # every class once, as GenEval lists them
    assert len({i.prompt for i in items}) == 553  # no duplicates


@pytest.mark.parametrize("n", [0, 1, 6, 10, 100, 1000])
def test_generates_exactly_n(n):
    items = generate_suite(n, seed=0)
    assert len(items) == n
    counts = Counter(i.tag for i in items)
    for tag, share in GENEVAL_PROPORTIONS.items():
        assert abs(counts[tag] - n * share / 553) < 1


def test_deterministic_per_seed():
    assert generate_suite(200, seed=7) == generate_suite(200, seed=7)
    assert generate_suite(200, seed=7) != generate_suite(200, seed=8)


def test_categories_restrict_tags():
    items = generate_suite(50, seed=0, categories=["position", "counting"])
    assert Counter(i.tag for i in items) == {"position": 28, "counting": 22}  # 100:80
    with pytest.raises(ValueError, match="unknown GenEval categories"):
        generate_suite(5, seed=0, categories=["shapes"])


def test_templates_are_genevals():
    by_tag = {i.tag: i for i in generate_suite(553, seed=3)}
    for item in generate_suite(553, seed=3):
        include = item.include
        if item.tag == "counting":
            assert 2 <= include[0].count <= 4
            assert item.exclude is not None and item.exclude[0].count == include[0].count + 1
        if item.tag in ("colors", "color_attr"):
            assert all(spec.cls != "person" for spec in include)
        if item.tag == "color_attr":
            assert include[0].color != include[1].color and include[0].cls != include[1].cls
        if item.tag == "position":
            assert include[1].position is not None and include[1].position[1] == 0
            assert (
                item.prompt
                == f"a photo of {article(include[1].cls)} {include[1].position[0]} {article(include[0].cls)}"
            )
        assert item.prompt.startswith("a photo of ")
    assert set(by_tag) == set(GENEVAL_TAGS)


def article(word: str) -> str:
    return f"an {word}" if word[0] in "aeiou" else f"a {word}"


def test_round_trip_parser_covers_genevals_grammar():
    """For thousands of generated rows, the parser reads back exactly the row's include."""
    checked = 0
    for seed in range(6):
        for item in generate_suite(553, seed=seed):
            graph = parse_prompt(item.prompt)
            assert signature(graph) == signature(graph_from_item(item)), item.prompt
            assert graph.dropped == [], item.prompt
            checked += 1
    assert checked == 3318


def test_graph_from_item_drops_unusable_positions():
    item = SuiteItem.model_validate(
        {"tag": "position", "prompt": "p",
         "include": [{"class": "cup", "count": 1}, {"class": "dog", "count": 1, "position": ["inside", 0]}]}
    )  # fmt: skip
    graph = graph_from_item(item)
    assert graph.relations == [] and "not a usable relation" in graph.dropped[0]

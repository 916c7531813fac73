"""Dataset loaders on real files: the shared SQuAD v1.1 dev part, and fixtures in the official
StreamingQA (JSONL + WMT documents, and the MAC CSV) and ArchivalQA (official + processed) forms."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from corpora.errors import DatasetError
from corpora.formats import detect_qa_format
from corpora.qa import load_dataset

FIX = Path(__file__).parent / "fixtures"


@pytest.mark.shared_data
def test_squad_v11_dev_part(shared_data: Path) -> None:
    ds = load_dataset(shared_data / "squad" / "squad-v1.1-dev-part-a.json")
    assert len(ds.documents) == 913
    assert len(ds.examples) == 4961
    first = ds.examples[0]
    assert first.qa_id == "56be4db0acb8001400a502ec"
    assert first.question == "Which NFL team represented the AFC at Super Bowl 50?"
    assert first.answers == ("Denver Broncos", "Denver Broncos", "Denver Broncos")
    assert first.group == "Super_Bowl_50"
    assert ds.documents[first.doc_id].text.startswith("Super Bowl 50 was an American football game")
    assert len({ex.group for ex in ds.examples}) == 24


def test_streamingqa_jsonl_joined_with_wmt_documents() -> None:
    ds = load_dataset(FIX / "streamingqa_eval.jsonl", documents=FIX / "streamingqa_docs.jsonl")
    assert [ex.qa_id for ex in ds.examples] == ["eval-0", "eval-1", "eval-2", "eval-3"]
    assert len(ds.documents) == 3  # eval-3 shares eval-0's evidence
    ex = ds.examples[1]
    assert ex.answers == ("31", "31 nests", "thirty-one")
    assert ex.target == "31"
    doc = ds.documents[ex.doc_id]
    assert doc.timestamp == 1570060800 and doc.text.endswith("Volunteers counted 31 nests.")
    assert ds.first_docs(1).doc_order() == [ds.examples[0].doc_id]
    assert [e.qa_id for e in ds.first_docs(1).examples] == ["eval-0", "eval-3"]


def test_streamingqa_csv_with_backslash_separated_answers() -> None:
    ds = load_dataset(FIX / "streamingqa.csv")
    assert detect_qa_format(FIX / "streamingqa.csv") == "streamingqa-csv"
    assert [ex.answers for ex in ds.examples] == [
        ("March", "in March"),
        ("31",),
        ("12 percent", "12%", "12 per cent"),
    ]
    assert "\n" in ds.documents[ds.examples[1].doc_id].text  # quoted multi-line field
    assert ds.examples[2].target == "12%"


def test_archivalqa_official_with_paragraphs_file() -> None:
    ds = load_dataset(FIX / "archivalqa_official.csv", documents=FIX / "archivalqa_paragraphs.csv")
    assert detect_qa_format(FIX / "archivalqa_official.csv") == "archivalqa"
    assert [ex.qa_id for ex in ds.examples] == ["train_0", "train_4", "train_5"]
    ex = ds.examples[1]
    assert ex.answers == ("May 26, 1988",) and ex.doc_id == "148748_0" and ex.group == "148748"
    assert ex.answers[0] in ds.documents[ex.doc_id].text


def test_archivalqa_processed_form() -> None:
    ds = load_dataset(FIX / "archivalqa_processed.csv")
    assert detect_qa_format(FIX / "archivalqa_processed.csv") == "archivalqa-processed"
    assert [ex.doc_id for ex in ds.examples] == ["1839755_20", "148748_0", "148748_1"]
    assert [ex.group for ex in ds.examples] == ["1839755", "148748", "148748"]
    assert ds.examples[2].answers == ("$7 billion",)


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_malformed_csv_row_names_file_and_line(tmp_path: Path) -> None:
    bad = _write(tmp_path / "bad.csv", 'text,question,answers\n"doc one",q1,a1\n"doc\ntwo",q2\n')
    with pytest.raises(DatasetError, match=r"bad\.csv:3: expected 3 fields, found 2"):
        load_dataset(bad)
    empty = _write(tmp_path / "empty.csv", "text,question,answers\ndoc,q,\n")
    with pytest.raises(DatasetError, match=r"empty\.csv:2: empty value in column\(s\) answers"):
        load_dataset(empty)
    cols = _write(tmp_path / "cols.csv", "text,question\ndoc,q\n")
    with pytest.raises(DatasetError, match=r"cols\.csv"):
        load_dataset(cols, "streamingqa-csv")


def test_malformed_jsonl_names_file_and_line(tmp_path: Path) -> None:
    docs = FIX / "streamingqa_docs.jsonl"
    lines = (FIX / "streamingqa_eval.jsonl").read_text().splitlines()
    broken = dict(json.loads(lines[1]))
    del broken["evidence_ts"]
    bad = _write(tmp_path / "qa.jsonl", "\n".join([lines[0], json.dumps(broken), lines[2]]) + "\n")
    with pytest.raises(DatasetError, match=r"qa\.jsonl:2: missing field 'evidence_ts'"):
        load_dataset(bad, documents=docs)
    orphan = dict(json.loads(lines[0]), evidence_id="nope")
    bad2 = _write(tmp_path / "qa2.jsonl", lines[0] + "\n" + json.dumps(orphan) + "\n")
    with pytest.raises(DatasetError, match=r"qa2\.jsonl:2: evidence_id 'nope' not found"):
        load_dataset(bad2, documents=docs)
    garbage = _write(tmp_path / "qa3.jsonl", lines[0] + "\n{not json\n")
    with pytest.raises(DatasetError, match=r"qa3\.jsonl:2: not valid JSON"):
        load_dataset(garbage, documents=docs)
    with pytest.raises(DatasetError, match="needs a documents file"):
        load_dataset(FIX / "streamingqa_eval.jsonl")


def test_malformed_squad_names_the_field(tmp_path: Path) -> None:
    bad = _write(
        tmp_path / "s.json",
        json.dumps(
            {
                "data": [
                    {"title": "T", "paragraphs": [{"context": "c", "qas": [{"id": "1", "question": "q"}]}]}
                ]
            }
        ),
    )
    with pytest.raises(
        DatasetError, match=r"s\.json: data\[0\]\.paragraphs\[0\]\.qas\[0\]: missing field 'answers'"
    ):
        load_dataset(bad)
    broken = _write(tmp_path / "b.json", '{"data": [\n  {"title": }\n]}')
    with pytest.raises(DatasetError, match=r"b\.json:2: not valid JSON"):
        load_dataset(broken)


def test_archivalqa_unknown_paragraph_and_bad_para_num(tmp_path: Path) -> None:
    text = (FIX / "archivalqa_official.csv").read_text().replace("148748_1", "999_9")
    bad = _write(tmp_path / "a.csv", text)
    with pytest.raises(DatasetError, match=r"a\.csv:4: para_id '999_9' not found"):
        load_dataset(bad, documents=FIX / "archivalqa_paragraphs.csv")
    proc = (FIX / "archivalqa_processed.csv").read_text().splitlines()
    proc[2] = proc[2].replace(",148748,0,", ",148748,zero,")
    bad2 = _write(tmp_path / "p.csv", "\n".join(proc) + "\n")
    with pytest.raises(DatasetError, match=r"p\.csv:3: para_num 'zero' is not an integer"):
        load_dataset(bad2)


def test_unknown_extension_and_header(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="extension"):
        load_dataset(_write(tmp_path / "x.txt", "hello"))
    with pytest.raises(DatasetError, match=r"x\.csv:1: unrecognised CSV header"):
        load_dataset(_write(tmp_path / "x.csv", "a,b\n1,2\n"))
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset(tmp_path / "missing.json")

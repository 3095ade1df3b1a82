"""hyena_glt.tokenizers: exact ids, round trips, batches, reverse complement, JSON round trip."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from hyena_glt.errors import UsageError
from hyena_glt.io.sequences import SequenceRecord, read_sequences, reverse_complement
from hyena_glt.tokenizers import (
    ByteTokenizer,
    KmerTokenizer,
    NucleotideTokenizer,
    ProteinTokenizer,
    get_tokenizer,
)

SPECS = ["nucleotide", "nucleotide:softmask", "kmer:1", "kmer:3", "kmer:6", "kmer:6:1", "kmer:4:3", "byte", "protein"]


def _random(alphabet: str, length: int, seed: int) -> str:
    rng = random.Random(seed)
    return "".join(rng.choice(alphabet) for _ in range(length))


def test_nucleotide_ids_are_the_contract():
    tok = get_tokenizer("nucleotide")
    assert isinstance(tok, NucleotideTokenizer) and tok.vocab_size == 10
    assert (tok.pad_id, tok.cls_id, tok.sep_id, tok.mask_id, tok.unk_id) == (0, 1, 2, 3, 4)
    ids = tok.encode("ACGTNacgtnUuRyk-é")
    assert ids.dtype == np.int64
    assert ids.tolist() == [5, 6, 7, 8, 9, 5, 6, 7, 8, 9, 8, 8, 9, 9, 9, 4, 4]
    assert tok.decode(tok.encode("ACGTN")) == "ACGTN"
    assert tok.decode([1, 5, 6, 2, 0, 0]) == "AC"  # specials other than UNK decode to nothing
    assert tok.tokens()[:10] == ["[PAD]", "[CLS]", "[SEP]", "[MASK]", "[UNK]", "A", "C", "G", "T", "N"]


def test_soft_mask_channel_keeps_case():
    tok = get_tokenizer("nucleotide:softmask")
    assert tok.vocab_size == 15
    assert tok.encode("ACGTNacgtnu").tolist() == [5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 13]
    text = _random("ACGTNacgtn", 2000, 1)
    assert tok.decode(tok.encode(text)) == text


def test_soft_mask_on_real_genome(data_dir):
    (human,) = read_sequences(data_dir / "MT-human.fa")
    folded = get_tokenizer("nucleotide").encode(human.seq)
    masked = get_tokenizer("nucleotide:softmask").encode(human.seq)
    assert folded[3106] == 5 and masked[3106] == 10
    assert np.flatnonzero(masked >= 10).tolist() == [3106]
    assert get_tokenizer("nucleotide").decode(folded) == human.seq.upper()


@pytest.mark.parametrize("spec", ["nucleotide", "kmer:3", "kmer:6:1", "kmer:5:2"])
def test_nucleotide_round_trip_on_real_data(data_dir, spec):
    tok = get_tokenizer(spec)
    for record in read_sequences(data_dir / "ce.fa", regions=["CHROMOSOME_II", "CHROMOSOME_MtDNA:1-4,999"]):
        assert tok.decode(tok.encode(record.seq)) == record.seq


def test_kmer_ids():
    assert get_tokenizer("kmer:3").encode("ACGTA").tolist() == [10 + 0 * 25 + 1 * 5 + 2, 8, 5]
    assert get_tokenizer("kmer:3:1").encode("ACGTA").tolist() == [17, 10 + 25 + 10 + 3, 10 + 50 + 15 + 0]
    assert get_tokenizer("kmer:2").encode("NNa").tolist() == [10 + 4 * 5 + 4, 5]
    assert get_tokenizer("kmer:4").encode("AC").tolist() == [5, 6]  # shorter than k: single bases
    assert get_tokenizer("kmer:2").vocab_size == 10 + 25
    assert get_tokenizer("kmer:3").tokens()[10:13] == ["AAA", "AAC", "AAG"]


@pytest.mark.parametrize("k,stride", [(1, 1), (2, 1), (3, 3), (4, 2), (6, 6), (6, 1), (5, 3)])
def test_kmer_round_trip_with_tails(k, stride):
    tok = KmerTokenizer(k, stride)
    for length in (0, 1, k - 1, k, k + 1, 97, 1000):
        text = _random("ACGTN", length, length)
        assert tok.decode(tok.encode(text)) == text


def test_kmer_settings_errors():
    with pytest.raises(UsageError, match="stride must be 1..k"):
        KmerTokenizer(3, 4)
    with pytest.raises(UsageError, match="k-mer size must be 1..8"):
        KmerTokenizer(9)


def test_byte_tokenizer_any_alphabet():
    tok = ByteTokenizer()
    assert tok.vocab_size == 261
    assert tok.encode("Aa\n").tolist() == [65 + 5, 97 + 5, 10 + 5]
    text = "ACGT acgt MKV* ñ 漢字"
    assert tok.decode(tok.encode(text)) == text


def test_protein_tokenizer():
    tok = ProteinTokenizer()
    assert tok.vocab_size == 26
    assert tok.encode("ACDEFGHIKLMNPQRSTVWYX").tolist() == list(range(5, 26))
    assert tok.encode("mbzjuo").tolist() == [15, 25, 25, 25, 25, 25]
    text = _random("ACDEFGHIKLMNPQRSTVWYX", 500, 3)
    assert tok.decode(tok.encode(text)) == text


def test_protein_stop_codon_is_sep_and_the_vocabulary_is_unchanged():
    # '*' (a stop codon, common in translated protein FASTA) takes the existing SEP id: a 27th id would
    # change the vocabulary, and so the embedding and LM head shapes, of every saved protein model.
    tok = ProteinTokenizer()
    assert tok.encode("MK*").tolist() == [15, 13, 2] and tok.vocab_size == 26
    assert tok.decode(tok.encode("MKV*MA*")) == "MKV*MA*"
    assert get_tokenizer({"type": "protein", "vocab_size": 26}).encode("A*").tolist() == [5, 2]
    assert tok.encode("A?#").tolist() == [5, 4, 4]  # anything else is still UNK


@pytest.mark.parametrize("spec", SPECS)
def test_dict_round_trip(spec):
    tok = get_tokenizer(spec)
    restored = get_tokenizer(json.loads(json.dumps(tok.to_dict())))
    assert type(restored) is type(tok) and restored == tok and restored.name == tok.name
    assert restored.vocab_size == tok.vocab_size
    text = _random("ACGTNacgt", 300, 7)
    assert restored.encode(text).tolist() == tok.encode(text).tolist()
    assert get_tokenizer(tok.name) == tok


def test_unknown_specs():
    with pytest.raises(UsageError, match="unknown tokenizer 'kmer:x'"):
        get_tokenizer("kmer:x")
    with pytest.raises(UsageError, match="unknown tokenizer type 'words'"):
        get_tokenizer({"type": "words"})
    with pytest.raises(UsageError, match="token id out of range"):
        get_tokenizer("nucleotide").decode([10])


@pytest.mark.parametrize("spec", ["nucleotide", "kmer:3", "byte", "protein"])
def test_encode_batch_pads_right(spec):
    tok = get_tokenizer(spec)
    seqs = ["ACGTACGTAC", "", "GGC", "TTTTTTT"]
    batch = tok.encode_batch(seqs)
    encoded = [tok.encode(s) for s in seqs]
    width = max(len(e) for e in encoded)
    assert batch["input_ids"].dtype == torch.long and batch["input_ids"].shape == (4, width)
    assert batch["attention_mask"].dtype == torch.bool
    assert batch["lengths"].tolist() == [len(e) for e in encoded]
    for row, ids in enumerate(encoded):
        assert batch["input_ids"][row, : len(ids)].tolist() == ids.tolist()
        assert (batch["input_ids"][row, len(ids) :] == tok.pad_id).all()
        assert batch["attention_mask"][row].tolist() == [i < len(ids) for i in range(width)]
    assert tok.encode_batch(seqs, pad_to=32)["input_ids"].shape == (4, 32)


@pytest.mark.parametrize("spec,alphabet", [("nucleotide", "ACGTN"), ("nucleotide:softmask", "ACGTNacgtn")])
def test_reverse_complement_batch_matches_string_reverse_complement(spec, alphabet):
    tok = get_tokenizer(spec)
    seqs = [_random(alphabet, n, n) for n in (17, 0, 5, 40)]
    batch = tok.encode_batch(seqs)
    flipped = tok.reverse_complement_batch(batch["input_ids"], batch["lengths"])
    expected = tok.encode_batch([reverse_complement(s) for s in seqs])["input_ids"]
    assert torch.equal(flipped, expected)
    assert torch.equal(tok.reverse_complement_batch(flipped, batch["lengths"]), batch["input_ids"])


@pytest.mark.parametrize("spec", SPECS)
def test_encode_compact_equals_encode(spec):
    tok = get_tokenizer(spec)
    text = _random("ACGTNacgtnRU-", 1000, 11) + "é"
    compact = tok.encode_compact(text)
    assert compact.dtype == tok.compact_dtype and compact.tolist() == tok.encode(text).tolist()
    assert tok.compact_dtype.itemsize == (1 if tok.vocab_size <= 256 else (2 if tok.vocab_size <= 65536 else 4))


def test_encode_records_checks_like_the_reader(tmp_path):
    from hyena_glt.errors import InputError
    from hyena_glt.tokenizers import encode_records

    path = tmp_path / "x.fa"
    path.write_text(">good\nACGTRYN\n>bad\nACGTAC\nGTAC*G\n")
    with pytest.raises(InputError) as from_reader:
        list(read_sequences(path, alphabet="nucleotide"))
    with pytest.raises(InputError) as from_encoder:
        list(encode_records(read_sequences(path), get_tokenizer("nucleotide"), check=True, source=str(path)))
    assert str(from_encoder.value) == str(from_reader.value)
    assert str(from_encoder.value).endswith("x.fa: record 'bad': invalid character '*' at position 11 (not in the nucleotide alphabet)")
    good, _ = next(encode_records(read_sequences(path), get_tokenizer("nucleotide"), check=True))
    assert good.id == "good"
    with pytest.raises(InputError, match="record 'p': invalid character '1' at position 3 .not in the protein alphabet"):
        list(encode_records([SequenceRecord("p", "MJ1")], get_tokenizer("protein"), check=True))
    # a stop codon passes both checks: the reader's protein alphabet and the encoder's UNK search
    stop = [SequenceRecord("s", "MKV*")]
    assert next(encode_records(stop, get_tokenizer("protein"), check=True))[1].tolist() == [15, 13, 22, 2]
    path.write_text(">s\nMKV*\n")
    assert next(read_sequences(path, alphabet="protein", iupac="error")).seq == "MKV*"
    # the file a record came from names it in the encoder's error when no source is given
    path.write_text(">a\nMKV*\n>b\nMK1\n")
    with pytest.raises(InputError, match=r"^.*x\.fa: record 'b': invalid character '1' at position 3"):
        list(encode_records(read_sequences(path), get_tokenizer("protein"), check=True))
    with pytest.raises(UsageError, match="cannot check its input"):
        list(encode_records([], get_tokenizer("kmer:3"), check=True))

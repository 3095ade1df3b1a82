"""`hyena-glt interpret` end to end: output formats, logos, variant effects (.tsv, .vcf.gz + tabix), and bad
input (one-line error, exit 2, no output file)."""

from __future__ import annotations

import gzip

import numpy as np
import pysam
import pytest
from typer.testing import CliRunner

from hyena_glt_cli.main import app
from test_interpret import LENGTH, MOTIF, _planted, trained_motif_model, write_vcf

runner = CliRunner()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return trained_motif_model(tmp_path_factory)


@pytest.fixture()
def fasta(tmp_path):
    """Three records: two with the motif (one strongly placed), one without."""
    seqs, _ = _planted(np.random.default_rng(21), 2, True)
    background, _ = _planted(np.random.default_rng(22), 1, False)
    path = tmp_path / "seqs.fa"
    path.write_text(f">with_motif_1\n{seqs[0]}\n>with_motif_2\n{seqs[1]}\n>background\n{background[0]}\n")
    return path


@pytest.fixture()
def genome(tmp_path):
    """An indexed FASTA, contig chrT (120 bp) with MOTIF at 0-based 50..58."""
    rng = np.random.default_rng(5)
    s = list(rng.choice(list("ACGT"), 120))
    s[50:50 + len(MOTIF)] = MOTIF
    path = tmp_path / "genome.fa"
    path.write_text(">chrT\n" + "".join(s) + "\n")
    pysam.faidx(str(path))
    return path, "".join(s)


def invoke(*args):
    return runner.invoke(app, ["-@", "1", *map(str, args)])


def test_npz_in_tfmodisco_layout(tmp_path, model_dir, fasta):
    out = tmp_path / "attr.npz"
    result = invoke("interpret", fasta, "--model", model_dir, "--method", "ism", "-o", out)
    assert result.exit_code == 0, result.stderr
    data = np.load(out)
    assert data["one_hot"].shape == (3, 4, LENGTH) and data["attributions"].shape == (3, 4, LENGTH)
    assert list(data["names"]) == ["with_motif_1", "with_motif_2", "background"]
    assert data["coordinates"].tolist()[0] == ["with_motif_1", "0", str(LENGTH), "."]
    np.testing.assert_array_equal(data["one_hot"].sum(1), np.ones((3, LENGTH)))  # pure ACGT records
    np.testing.assert_allclose(data["importance"], (data["attributions"] * data["one_hot"]).sum(1), atol=1e-6)
    assert data["scores"][0] > 0 > data["scores"][2]  # log-odds of "motif": planted vs background


def test_npz_to_stdout_equals_the_file(tmp_path, model_dir, fasta):
    """Like tokenize and embed, interpret writes its .npz to a pipe with -o - --format npz."""
    import io

    out = tmp_path / "attr.npz"
    assert invoke("interpret", fasta, "--model", model_dir, "-o", out).exit_code == 0
    piped = invoke("interpret", fasta, "--model", model_dir, "--format", "npz", "-o", "-")
    assert piped.exit_code == 0, piped.stderr
    streamed, saved = np.load(io.BytesIO(piped.stdout_bytes)), np.load(out)
    assert sorted(streamed.files) == sorted(saved.files)
    np.testing.assert_array_equal(streamed["attributions"], saved["attributions"])


def test_rna_is_read_as_dna(tmp_path, model_dir, fasta):
    """U reads as T, as the nucleotide tokenizer reads it for classify: the same attributions as the DNA."""
    dna = fasta.read_text().splitlines()[1]
    rna = tmp_path / "rna.fa"
    rna.write_text(f">dna\n{dna}\n>rna\n{dna.replace('T', 'U')}\n")
    out = tmp_path / "rna.npz"
    result = invoke("interpret", rna, "--model", model_dir, "--method", "ism", "-o", out)
    assert result.exit_code == 0, result.stderr
    z = np.load(out)
    np.testing.assert_array_equal(z["attributions"][0], z["attributions"][1])
    assert z["scores"][0] == z["scores"][1]


def test_batch_size_auto_is_the_default_and_changes_no_value(tmp_path, model_dir, fasta):
    """--batch-size auto (as in classify and embed) batches by a units budget; any batch size gives the same
    attributions, and a bad one is one line, exit 2."""
    outputs = {}
    for batch in ("auto", "1", None):
        out = tmp_path / f"attr_{batch}.npz"
        args = ["--batch-size", batch] if batch else []
        result = invoke("interpret", fasta, "--model", model_dir, "--method", "ism", "-o", out, *args)
        assert result.exit_code == 0, result.stderr
        outputs[batch] = np.load(out)["attributions"]
    np.testing.assert_allclose(outputs["1"], outputs["auto"], atol=1e-5)
    np.testing.assert_array_equal(outputs[None], outputs["auto"])
    for bad, message in (("0", "--batch-size must be at least 1 (got 0)"), ("many", "must be a number or 'auto'")):
        result = invoke("interpret", fasta, "--model", model_dir, "-o", tmp_path / "x.npz", "-b", bad)
        assert result.exit_code == 2 and message in result.stderr and not (tmp_path / "x.npz").exists()


def test_bedgraph_of_a_region_is_in_genome_coordinates_and_sorted(tmp_path, model_dir, genome):
    path, seq = genome
    out = tmp_path / "attr.bedgraph"
    result = invoke("interpret", path, "--region", "chrT:31-70", "--region", "chrT:1-40", "--model", model_dir,
                    "--method", "ism", "-o", out)
    assert result.exit_code == 0, result.stderr
    lines = out.read_text().splitlines()
    assert lines[0].startswith("track type=bedGraph")
    rows = [line.split("\t") for line in lines[1:]]
    starts = [int(r[1]) for r in rows]
    assert starts == list(range(70)) and all(r[0] == "chrT" and int(r[2]) == int(r[1]) + 1 for r in rows)
    values = np.array([float(r[3]) for r in rows])
    assert np.abs(values[50:57]).min() > np.abs(values[30:50]).max()  # the motif stands out
    # .bedgraph.gz: the same track, BGZF-compressed and tabix-indexed (track line skipped)
    packed = tmp_path / "attr.bedgraph.gz"
    result = invoke("interpret", path, "--region", "chrT:31-70", "--region", "chrT:1-40", "--model", model_dir,
                    "--method", "ism", "-o", packed)
    assert result.exit_code == 0, result.stderr
    assert gzip.decompress(packed.read_bytes()) == out.read_bytes()
    with pysam.TabixFile(str(packed)) as tabix:
        assert list(tabix.fetch("chrT", 50, 52)) == lines[51:53]


def test_tsv_rows_per_position_and_window_option(tmp_path, model_dir, genome):
    path, seq = genome
    out = tmp_path / "attr.tsv"
    result = invoke("interpret", path, "--model", model_dir, "--method", "integrated-gradients", "--steps", "8",
                    "--window", LENGTH, "--stride", LENGTH, "-o", out)
    assert result.exit_code == 0, result.stderr
    lines = out.read_text().splitlines()
    assert lines[0].split("\t")[:7] == ["record", "contig", "position", "strand", "base", "target", "importance"]
    rows = [line.split("\t") for line in lines[1:]]
    assert len(rows) == 120  # three windows of 40
    assert [r[1] for r in rows] == ["chrT"] * 120 and [int(r[2]) for r in rows] == list(range(1, 121))
    assert "".join(r[4] for r in rows) == seq and {r[5] for r in rows} == {"motif"}
    packed = tmp_path / "attr.tsv.gz"
    result = invoke("interpret", path, "--model", model_dir, "--method", "integrated-gradients", "--steps", "8",
                    "--window", LENGTH, "--stride", LENGTH, "-o", packed)
    assert result.exit_code == 0, result.stderr
    assert gzip.decompress(packed.read_bytes()).decode().splitlines() == lines
    # --last as in classify: windows of 50 over 120 bases leave a 20-base tail, dropped or kept short
    for last, positions in (("drop", 100), ("pad", 120)):
        result = invoke("interpret", path, "--model", model_dir, "--method", "ism", "--window", 50, "--last", last,
                        "-o", out)
        assert result.exit_code == 0, result.stderr
        assert [int(line.split("\t")[2]) for line in out.read_text().splitlines()[1:]] == list(range(1, positions + 1))


def test_minus_strand_region_lands_on_the_right_genome_bases(tmp_path, model_dir, genome):
    """A '-' BED line is read as the minus strand (the reverse complement of its span): each of its bases is
    reported at the genome position it pairs with, in the TSV and in the bedGraph alike."""
    path, seq = genome
    complement = str.maketrans("ACGT", "TGCA")
    bed = tmp_path / "minus.bed"
    bed.write_text("chrT\t30\t70\tm\t0\t-\n")
    out = tmp_path / "attr.tsv"
    result = invoke("interpret", path, "--regions", bed, "--model", model_dir, "--method", "ism", "-o", out)
    assert result.exit_code == 0, result.stderr
    rows = [line.split("\t") for line in out.read_text().splitlines()[1:]]
    assert [int(r[2]) for r in rows] == list(range(70, 30, -1)) and {r[3] for r in rows} == {"-"}
    assert all(r[4] == seq[int(r[2]) - 1].translate(complement) for r in rows)  # base i pairs with genome end-1-i
    graph = tmp_path / "attr.bedgraph"
    result = invoke("interpret", path, "--regions", bed, "--model", model_dir, "--method", "ism", "-o", graph)
    assert result.exit_code == 0, result.stderr
    values = {int(r.split("\t")[1]): float(r.split("\t")[3]) for r in graph.read_text().splitlines()[1:]}
    assert sorted(values) == list(range(30, 70))
    assert {p: values[p] for p in values} == {int(r[2]) - 1: pytest.approx(float(r[6]), abs=1e-5) for r in rows}
    # An empty BED leaves nothing to attribute: one line naming the input, exit 2, no output.
    (tmp_path / "empty.bed").write_text("")
    result = invoke("interpret", path, "--regions", tmp_path / "empty.bed", "--model", model_dir, "-o", tmp_path / "e.tsv")
    assert result.exit_code == 2 and not (tmp_path / "e.tsv").exists()
    assert result.stderr.endswith(f"hyena-glt: error: {path}: no records in the given region(s)\n"), result.stderr


def test_plot_writes_logos_of_the_top_records(tmp_path, model_dir, fasta):
    logos = tmp_path / "logos"
    result = invoke("interpret", fasta, "--model", model_dir, "--method", "saliency", "--plot", logos, "--top", "2")
    assert result.exit_code == 0, result.stderr
    pngs = sorted(p.name for p in logos.iterdir())
    assert len(pngs) == 2 and all(p.endswith(".png") for p in pngs)
    assert "background" not in " ".join(pngs)  # the top two by score are the motif records
    assert (logos / pngs[0]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_variant_effects_tsv_and_vcf(tmp_path, model_dir, genome):
    path, seq = genome
    rows = [("chrT", 10, seq[9], "ACGT"[("ACGT".index(seq[9]) + 2) % 4]), ("chrT", 51, "G", "C"),
            ("chrT", 52, "ATAAC", "A"), ("chrT", 53, "T", "A,C")]
    vcf = write_vcf(tmp_path / "calls.vcf.gz", {"chrT": 120}, rows)
    tsv = tmp_path / "effects.tsv"
    result = invoke("interpret", "--variants", vcf, "--reference", path, "--model", model_dir, "-o", tsv)
    assert result.exit_code == 0, result.stderr
    lines = [line.split("\t") for line in tsv.read_text().splitlines()]
    assert lines[0] == ["chrom", "pos", "id", "ref", "alt", "ref_background", "alt_background", "diff_background",
                        "log_odds_ratio_background", "ref_motif", "alt_motif", "diff_motif", "log_odds_ratio_motif"]
    assert [(r[1], r[4]) for r in lines[1:]] == [("10", rows[0][3]), ("51", "C"), ("52", "A"), ("53", "A"), ("53", "C")]
    destroy = dict(zip(lines[0], lines[3]))  # the deletion of the motif's core
    assert float(destroy["diff_motif"]) < -0.5 and float(destroy["log_odds_ratio_motif"]) < -2
    assert float(destroy["diff_background"]) == pytest.approx(-float(destroy["diff_motif"]), abs=1e-4)

    out = tmp_path / "effects.vcf.gz"
    result = invoke("interpret", "--variants", vcf, "--reference", path, "--model", model_dir, "-o", out)
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "effects.vcf.gz.tbi").exists()
    with pysam.VariantFile(str(out)) as back:
        assert "HG_LOR_motif" in back.header.info
        records = list(back.fetch("chrT", 40, 60))  # the tabix index works
    assert [(r.pos, r.alts) for r in records] == [(51, ("C",)), (52, ("A",)), (53, ("A",)), (53, ("C",))]
    assert records[1].info["HG_DIFF_motif"][0] == pytest.approx(float(destroy["diff_motif"]), abs=1e-5)


@pytest.mark.parametrize("case, message", [
    ("contig", "contig 'chrZ' is not in the reference"),
    ("beyond", "beyond the end of contig 'chrT' (120 bp)"),
    ("mismatch", "record 'chrT:51 A>C': REF 'A' does not match the reference ('G')"),
    ("malformed", "calls.vcf: cannot read VCF record 1 (Could not parse the position 'not_a_number')"),
    ("window0", "--window must be at least 1 (got 0)"),  # not the model's window in disguise
])
def test_bad_vcf_is_one_line_exit_2_and_no_output(tmp_path, model_dir, genome, case, message):
    path, _ = genome
    if case == "malformed":
        vcf = tmp_path / "calls.vcf"
        vcf.write_text("##fileformat=VCFv4.2\n##contig=<ID=chrT,length=120>\n"
                       "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\nchrT\tnot_a_number\t.\tG\tC\t.\t.\t.\n")
    else:
        row = {"contig": ("chrZ", 5, "A", "C"), "beyond": ("chrT", 121, "A", "C"), "mismatch": ("chrT", 51, "A", "C"),
               "window0": ("chrT", 51, "G", "C")}[case]
        vcf = write_vcf(tmp_path / "calls.vcf.gz", {"chrT": 200, "chrZ": 50}, [row])
    out = tmp_path / "effects.tsv"
    extra = ["--window", "0"] if case == "window0" else []
    result = invoke("interpret", "--variants", vcf, "--reference", path, "--model", model_dir, "-o", out, *extra)
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("hyena-glt: error: ")
    assert message in result.stderr
    assert not out.exists() and list(tmp_path.glob(".effects*")) == []


def test_skip_mismatch_counts_on_stderr(tmp_path, model_dir, genome):
    path, _ = genome
    vcf = write_vcf(tmp_path / "calls.vcf.gz", {"chrT": 120}, [("chrT", 51, "A", "C"), ("chrT", 51, "G", "T")])
    out = tmp_path / "effects.tsv"
    result = invoke("interpret", "--variants", vcf, "--reference", path, "--model", model_dir, "--skip-mismatch", "-o", out)
    assert result.exit_code == 0, result.stderr
    assert "skipped 1 variant allele(s) whose REF does not match" in result.stderr
    assert len(out.read_text().splitlines()) == 2


@pytest.mark.parametrize("args, message", [
    (["--method", "gradcam"], "unknown --method 'gradcam'"),
    (["--target", "enhancer"], "unknown --target 'enhancer'"),
    (["--baseline", "gc"], "unknown --baseline 'gc'"),
    (["--method", "deepshap"], "deepshap"),
    (["--window", "0"], "--window must be at least 1 (got 0)"),  # as with --variants
])
def test_bad_options_are_one_line_exit_2_and_no_output(tmp_path, model_dir, fasta, args, message):
    out = tmp_path / "attr.npz"
    result = invoke("interpret", fasta, "--model", model_dir, *args, "-o", out)
    assert result.exit_code == 2, result.stderr
    assert result.stderr.count("\n") == 1 and message in result.stderr
    assert not out.exists()


def test_ism_window_to_stdout(model_dir, fasta):
    result = invoke("interpret", fasta, "--model", model_dir, "--method", "ism", "--ism-window", "5-12", "-o", "-")
    assert result.exit_code == 0, result.stderr
    rows = [line.split("\t") for line in result.stdout.splitlines()[1:]]
    assert len(rows) == 3 * LENGTH
    inside = [float(r[6]) != 0 for r in rows[:LENGTH]]
    assert inside == [4 <= i < 12 for i in range(LENGTH)]  # only bases 5..12 (1-based) were mutated


def test_duplicate_names_refused_for_per_position_outputs(tmp_path, model_dir, fasta):
    # Two records named 'dup' would be averaged into one bedGraph track, or share the TSV's positions.
    records = fasta.read_text().splitlines()
    dup = tmp_path / "dup.fa"
    dup.write_text("\n".join([">dup", records[1], ">other", records[3], ">dup", records[5]]) + "\n")
    for name, output in (("i.bedgraph", "bedGraph output"), ("i.bedgraph.gz", "bedGraph output"),
                         ("i.tsv", "per-position TSV output")):
        result = invoke("interpret", dup, "--model", model_dir, "-o", tmp_path / name)
        assert result.exit_code == 2
        assert result.stderr == (f"hyena-glt: error: {dup}: record 'dup' appears twice (records 1 and 3); "
                                 f"names must be unique for {output}\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dup.fa", "seqs.fa"]
    # the .npz holds one row per record: both are kept, under their name
    result = invoke("interpret", dup, "--model", model_dir, "-o", tmp_path / "i.npz")
    assert result.exit_code == 0, result.stderr
    assert np.load(tmp_path / "i.npz")["names"].tolist() == ["dup", "other", "dup"]
    nameless = tmp_path / "noname.fa"
    nameless.write_text(f">\n{records[1]}\n")
    result = invoke("interpret", nameless, "--model", model_dir, "-o", tmp_path / "n.npz")
    assert result.exit_code == 2
    assert result.stderr == f"hyena-glt: error: {nameless}: record 1 has no name; .npz output needs one\n"


def test_plot_folder_clashing_with_a_file_is_one_line_exit_2(tmp_path, model_dir, fasta):
    out = tmp_path / "y.tsv"
    result = invoke("interpret", fasta, "--model", model_dir, "-o", out, "--plot", out)
    assert result.exit_code == 2
    assert result.stderr == f"hyena-glt: error: two outputs are the same file ({out}): give each output its own path\n"
    assert not out.exists()
    existing = tmp_path / "notes.txt"
    existing.write_text("keep\n")
    result = invoke("interpret", fasta, "--model", model_dir, "-o", out, "--plot", existing)
    assert result.exit_code == 2
    assert result.stderr == f"hyena-glt: error: cannot write to folder {existing}: a file of that name exists\n"
    assert existing.read_text() == "keep\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "seqs.fa"]


def test_ism_window_past_the_end_names_the_record_and_the_value_as_typed(tmp_path, model_dir, fasta):
    out = tmp_path / "ism.tsv"
    result = invoke("interpret", fasta, "--model", model_dir, "--method", "ism", "--ism-window", "500-600", "-o", out)
    assert result.exit_code == 2
    assert result.stderr == (f"hyena-glt: error: {fasta}: record 'with_motif_1': --ism-window 500-600 starts after "
                             f"the end of this {LENGTH}-base sequence\n")
    assert not out.exists()


def test_skipped_variants_are_counted_by_reason(tmp_path, model_dir, genome):
    path, seq = genome
    vcf = tmp_path / "calls.vcf"
    vcf.write_text("##fileformat=VCFv4.2\n##contig=<ID=chrT,length=120>\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
                   f"chrT\t10\tnone\t{seq[9]}\t.\t.\t.\t.\n"
                   f"chrT\t20\tiupac\t{seq[19]}\tR\t.\t.\t.\n"
                   f"chrT\t30\tlong\t{seq[29]}\t{seq[29] + 'A' * LENGTH}\t.\t.\t.\n"
                   f"chrT\t40\tsv\t{seq[39]}\t<DEL>\t.\t.\t.\n"
                   f"chrT\t51\tsnv\tG\tC\t.\t.\t.\n")
    out = tmp_path / "effects.tsv"
    result = invoke("interpret", "--variants", vcf, "--reference", path, "--model", model_dir, "--max-indel", "100",
                    "-o", out)
    assert result.exit_code == 0, result.stderr
    assert result.stderr.splitlines() == [
        "hyena-glt: skipped 1 symbolic allele(s) or indel(s) longer than --max-indel",
        "hyena-glt: skipped 1 ALT allele(s) with IUPAC ambiguity codes (R, Y, ...)",
        "hyena-glt: skipped 1 record(s) with no ALT allele ('.')",
        f"hyena-glt: skipped 1 allele(s) longer than the {LENGTH}-base window (or than their contig)",
        "hyena-glt: scored 1 variant allele(s)"]
    assert [line.split("\t")[2] for line in out.read_text().splitlines()[1:]] == ["snv"]


def test_plain_gzip_reference_is_one_line_without_htslib_noise(tmp_path, model_dir, genome, capfd):
    path, _ = genome
    packed = tmp_path / "genome_plain.fa.gz"
    packed.write_bytes(gzip.compress(path.read_bytes()))
    vcf = write_vcf(tmp_path / "calls.vcf.gz", {"chrT": 120}, [("chrT", 51, "G", "C")])
    out = tmp_path / "effects.tsv"
    result = invoke("interpret", "--variants", vcf, "--reference", packed, "--model", model_dir, "-o", out)
    assert result.exit_code == 2
    assert result.stderr == (f"hyena-glt: error: {packed}: cannot index a plain-gzip FASTA for regions; "
                             "recompress it with bgzip\n")
    assert capfd.readouterr().err == ""  # htslib's own [E::fai_build_core] lines (fd 2) stay quiet
    assert not out.exists() and not (tmp_path / "genome_plain.fa.gz.fai").exists()


def test_a_genome_is_explained_in_the_models_window_by_default(tmp_path, model_dir, genome, fasta):
    """Explained whole, a contig longer than the model's window costs far more than its windows (ISM reruns
    the model 3 x L times on L bases; saliency of a 1 Mb contig was killed at 24 GB), so a genome is explained
    window by window, as `--window <the model's>` does, for every method."""
    path, _ = genome
    for method in ("ism", "saliency"):
        default, explicit = tmp_path / f"default_{method}.bedgraph", tmp_path / f"explicit_{method}.bedgraph"
        result = invoke("interpret", path, "--model", model_dir, "--method", method, "-o", default)
        assert result.exit_code == 0, result.stderr
        assert f"record 'chrT' (120 bp) is longer than the model's {LENGTH}-unit window" in result.stderr
        assert invoke("interpret", path, "--model", model_dir, "--method", method, "--window", LENGTH,
                      "-o", explicit).exit_code == 0
        assert default.read_text() == explicit.read_text()
    whole = tmp_path / "whole.bedgraph"  # --ism-window: a span of the whole record, as asked
    assert invoke("interpret", path, "--model", model_dir, "--method", "ism", "--ism-window", "1-120",
                  "-o", whole).exit_code == 0
    assert whole.read_text() != (tmp_path / "default_ism.bedgraph").read_text()
    # records of the model's length (no genome) are explained whole, as before
    result = invoke("interpret", fasta, "--model", model_dir, "--method", "ism", "-o", tmp_path / "r.npz")
    assert result.exit_code == 0 and "window by window" not in result.stderr
    assert np.load(tmp_path / "r.npz")["attributions"].shape == (3, 4, LENGTH)

"""Reading sequences: one function for FASTA, FASTQ, SAM/BAM/CRAM and CSV/TSV, told apart by content."""
import itertools

from hyena_glt.io.sequences import read_sequences, sliding_windows

# read_sequences is lazy: it streams SequenceRecords, and opens the file only when the first one is asked for.
read = next(read_sequences("example_data/ce_reads.fastq"))
print("FASTQ:", read.id, len(read), read.qual[:8])
row = next(read_sequences("example_data/gue/mouse_2/test.csv"))  # a table with a 'sequence' column
print("CSV:", row.id, len(row), row.description)

# BAM reads come in sequencing orientation (reverse-strand reads reverse-complemented back; pass
# stored_orientation=True to keep them as stored). The alignment is in the description, not in contig/start.
read = next(read_sequences("example_data/ce_reads.bam"))
print("BAM:", read.id, read.strand, read.description, read.contig)

# Regions of an indexed FASTA: samtools strings are 1-based and inclusive; the record has 0-based coordinates.
region = next(read_sequences("example_data/MT-human.fa", regions=["MT_human:3101-3110"]))
print("region:", region.id, region.contig, region.start, region.end, region.seq)

# A BED file (0-based, half-open); a '-' in its strand column reads the reverse complement.
genes = read_sequences("example_data/arabidopsis_chloroplast.fa",
                       regions_bed="example_data/arabidopsis_chloroplast_genes.bed")
for gene in itertools.islice(genes, 3):
    print("BED:", gene.id, gene.strand, gene.description, len(gene), gene.seq[:12])

# The reads of an indexed BAM that overlap a region, as `samtools view FILE REGION` gives them.
print("reads over CHROMOSOME_I:100-120:", sum(1 for _ in read_sequences("example_data/ce_reads.bam",
                                                                       regions=["CHROMOSOME_I:100-120"])))

# sliding_windows (stride defaults to the window): windows never cross a record's end; last="shift" moves the
# last one back to end there, "pad" keeps the short tail, "drop" leaves it out. Windows keep genome coordinates.
for last in ("shift", "pad", "drop"):
    print(last, [(w.id, w.seq) for w in sliding_windows([region], window=4, last=last)])

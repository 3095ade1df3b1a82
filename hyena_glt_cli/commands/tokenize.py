"""`hyena-glt tokenize`: sequences → token ids (TSV or npz), or → patch intervals (BED) with --patcher."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Optional

import typer

from hyena_glt.errors import UsageError

from ..common import (
    FormatOpt,
    InputsArg,
    OutputOpt,
    ReferenceOpt,
    RegionOpt,
    RegionsOpt,
    check_files,
    output_format,
    progress,
    refuse_binary_to_terminal,
)

log = logging.getLogger("hyena_glt")

TokenizerOpt = Annotated[
    str,
    typer.Option(
        "--tokenizer", "-t",
        help="nucleotide, nucleotide:softmask, kmer:K (non-overlapping), kmer:K:S (stride S), byte or protein.",
    ),
]
WindowOpt = Annotated[Optional[int], typer.Option("--window", "-w", help="Cut records into windows of this many bases.")]
StrideOpt = Annotated[Optional[int], typer.Option("--stride", help="Step between window starts (default: --window).")]
LastOpt = Annotated[
    str,
    typer.Option("--last", help="Last partial window: shift (back to end at the record end), pad (keep it short) or drop."),
]
IupacOpt = Annotated[str, typer.Option(
    "--iupac", help="Ambiguity codes (R, Y, ...): N (accept them; the nucleotide and k-mer tokenizers read them as N, "
                    "protein reads B Z J U O as X) or error (reject them). keep gives the same ids as N: no tokenizer "
                    "has ids of its own for them.")]
OrientationOpt = Annotated[
    bool, typer.Option("--stored-orientation", help="SAM/BAM/CRAM: keep reverse-strand reads as stored, not as sequenced.")
]
PatcherOpt = Annotated[
    str, typer.Option("--patcher", help="none, static:K or entropy: write patch intervals as BED instead of token ids.")
]
EntropyModelOpt = Annotated[
    Optional[str], typer.Option("--entropy-model", metavar="<path|name>",
                                help="Entropy LM folder or bundled LM name (or a model folder holding entropy_model/).")
]
StatsOpt = Annotated[Optional[Path], typer.Option("--stats", help="With --patcher: per-contig patch statistics as TSV.")]
PlotOpt = Annotated[Optional[Path], typer.Option("--plot", help="With --patcher: PNG of the patches (and entropy) of the first record.")]
ThresholdOpt = Annotated[Optional[float], typer.Option("--threshold", help="Entropy patcher: boundary threshold θ in bits (default: the LM's stored one).")]
TargetOpt = Annotated[Optional[float], typer.Option("--target-patch-length", help="Entropy patcher: calibrate θ on the input for this mean patch length.")]
ModeOpt = Annotated[Optional[str], typer.Option("--mode", help="Entropy patcher: global (H > θ) or monotonic (H(t) − H(t−1) > θ).")]
MinPatchOpt = Annotated[Optional[int], typer.Option("--min-patch-length", help="Entropy patcher: shortest patch.")]
MaxPatchOpt = Annotated[Optional[int], typer.Option("--max-patch-length", help="Entropy patcher: longest patch.")]


def register(app: typer.Typer) -> None:
    @app.command("tokenize")
    def tokenize(
        inputs: InputsArg,
        output: OutputOpt = "-",
        fmt: FormatOpt = None,
        tokenizer: TokenizerOpt = "nucleotide",
        region: RegionOpt = None,
        regions: RegionsOpt = None,
        reference: ReferenceOpt = None,
        window: WindowOpt = None,
        stride: StrideOpt = None,
        last: LastOpt = "shift",
        iupac: IupacOpt = "N",
        stored_orientation: OrientationOpt = False,
        patcher: PatcherOpt = "none",
        entropy_model: EntropyModelOpt = None,
        stats: StatsOpt = None,
        plot: PlotOpt = None,
        threshold: ThresholdOpt = None,
        target_patch_length: TargetOpt = None,
        mode: ModeOpt = None,
        min_patch_length: MinPatchOpt = None,
        max_patch_length: MaxPatchOpt = None,
    ) -> None:
        """Turn sequences into token ids (TSV: id, length, ids; or .npz), or, with --patcher, into
        BED patch intervals with a per-contig summary on stderr. A .gz output is compressed (.bed.gz:
        BGZF with a tabix index).

        Example: hyena-glt tokenize example_data/ex1.fa --region seq1:1-100 -o seq1.npz
        """
        from hyena_glt.io.sequences import check_names, drop_empty, read_many, sliding_windows
        from hyena_glt.io.writers import write_encoded
        from hyena_glt.tokenizers import encode_records, get_tokenizer

        check_files([*inputs, regions, reference], [output, stats, plot])
        if plot is not None:
            output_format(str(plot), None, ("png",), "png", has_format_option=False)
        if stats is not None and str(stats) == "-" and output == "-":
            raise UsageError("--stats - and the BED would share stdout: write one of them to a file")
        tok = get_tokenizer(tokenizer)
        patching = patcher.strip() != "none"
        the_patcher = None
        if patching:
            from hyena_glt.model import entropy

            entropy_options = dict(threshold=threshold, target_patch_length=target_patch_length, mode=mode,
                                   min_patch_length=min_patch_length, max_patch_length=max_patch_length)
            if patcher.strip() != "entropy" and any(v is not None for v in entropy_options.values()):
                raise UsageError("--threshold/--target-patch-length/--mode/--min/--max-patch-length need --patcher entropy")
            the_patcher = entropy.make_patcher(patcher.strip(), entropy_model=entropy_model, **entropy_options)
            # an entropy model reads units with the tokenizer it was trained with
            model_tok = getattr(the_patcher, "tokenizer", None)
            if model_tok is not None and tokenizer != "nucleotide" and tok.to_dict() != model_tok.to_dict():
                raise UsageError(f"--patcher entropy reads units with its entropy model's tokenizer "
                                 f"('{model_tok.name}'): drop -t {tokenizer}")
            tok = model_tok or tok
        fmt = output_format(output, fmt, ("tsv", "npz", "bed"), "bed" if patching else "tsv")
        if fmt == "npz":
            refuse_binary_to_terminal(output)
        if patching and tok.chars_per_unit != 1:
            raise UsageError(f"--patcher needs one unit per character; tokenizer '{tok.name}' has k-mer units")
        if patching and fmt != "bed":
            raise UsageError(f"--patcher writes patch intervals as BED, not {fmt} (use -o FILE.bed)")
        if not patching:
            if fmt == "bed":
                raise UsageError("BED output holds patch intervals: add --patcher static:K or --patcher entropy")
            for name, value in (("--entropy-model", entropy_model), ("--stats", stats), ("--plot", plot),
                                ("--threshold", threshold), ("--target-patch-length", target_patch_length),
                                ("--mode", mode), ("--min-patch-length", min_patch_length),
                                ("--max-patch-length", max_patch_length)):
                if value is not None:
                    raise UsageError(f"{name} needs --patcher")
        if stride is not None and window is None:
            raise UsageError("--stride needs --window")
        if tok.alphabet is None and iupac != "N":
            raise UsageError(f"--iupac {iupac} does not apply to the {tok.name} tokenizer (it reads every byte as it is)")

        # Nucleotide/protein tokenizers check the alphabet while encoding (one pass over the input
        # instead of two); the reader checks it where that cannot be done the same way.
        encoder_checks = tok.checks_alphabet and iupac == "N" and window is None and not patching
        read_options = dict(
            reference=reference,
            regions=region,
            regions_bed=regions,
            stored_orientation=stored_orientation,
            alphabet=None if encoder_checks else tok.alphabet,
            iupac=iupac,
        )

        # Records with no sequence are skipped with a warning, as the other subcommands do. Every record needs
        # a name; windows and patch BED rows are keyed by contig, which is the record's name unless it has
        # coordinates (regions), so names must be unique there.
        records = drop_empty(read_many(inputs, **read_options))
        what = "BED output" if patching else ("windows" if window is not None else f"{fmt.upper()} output")
        records = check_names(records, what, unique=patching or window is not None)
        if window is not None:
            records = sliding_windows(records, window, stride, last)
        if not patching:
            encoded = encode_records(records, tok, check=encoder_checks)
            count, units = write_encoded(progress(encoded, "tokenizing"), tok, output, fmt)
            log.debug("tokenized %d records, %d units (%s)", count, units, tok.name)
            return

        summary = entropy.write_patches(
            records, output, the_patcher, tok, stats_path=stats, plot_path=plot,
            progress=lambda stream: progress(stream, "patching"),
        )
        for line in summary.summary_lines():
            log.info("%s", line)

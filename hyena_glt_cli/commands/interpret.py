"""`hyena-glt interpret`: per-base attributions (saliency, integrated gradients, DeepLIFT/DeepSHAP, ISM),
sequence logos, and variant effects from a VCF."""

from __future__ import annotations

import heapq
import itertools
import logging
from pathlib import Path
from typing import Annotated, Optional

import typer

from hyena_glt.errors import InputError, UsageError

from ..common import (DeviceOpt, FormatOpt, ModelOpt, PrecisionOpt, RegionOpt, RegionsOpt, check_files, flag, given,
                      output_format, progress, refuse_binary_to_terminal, settings)

log = logging.getLogger("hyena_glt")

ATTRIBUTION_FORMATS = ("npz", "bedgraph", "tsv")
VARIANT_FORMATS = ("tsv", "vcf")


def _parse_span(text: Optional[str]) -> Optional[tuple[int, int]]:
    """``101-200`` (1-based, inclusive) -> (100, 200)."""
    if text is None:
        return None
    try:
        a, b = (int(x.replace(",", "")) for x in text.split("-"))
    except ValueError:
        raise UsageError(f"--ism-window must look like START-END, 1-based inclusive, e.g. 101-200 (got '{text}')") from None
    if not 1 <= a <= b:
        raise UsageError(f"--ism-window {text}: need 1 <= START <= END")
    return a - 1, b


def _genome_window(records, model_window):
    """(window, records) without --window: the model's window where the input is a genome (as classify scans
    one), else None. A model reads its window; explained whole, a genome costs far more than its windows: ISM
    reruns the model for 3 mutations of every base (the 16.6 kb human mitochondrial genome: 49,707 forwards
    of 16.6 kb, hours on a CPU, against 27 s in 70 nt windows), and saliency of the 1 Mb C. elegans piece kept
    autograd's activations of the whole contig until the kernel killed it at 24 GB."""
    from hyena_glt.inference import looks_like_genome

    first = next(records, None)
    if first is None:
        return None, iter(())
    records = itertools.chain([first], records)
    if not looks_like_genome(first, model_window):
        return None, records
    log.info("record '%s' (%d bp) is longer than the model's %d-unit window: explaining it window by window "
             "(--window %d)", first.id, len(first.seq), model_window, model_window)
    return int(model_window), records


def register(app: typer.Typer) -> None:
    @app.command("interpret")
    def interpret(
        ctx: typer.Context,
        inputs: Annotated[Optional[list[str]], typer.Argument(help="Sequences to explain (FASTA/FASTQ/BAM, indexed FASTA with --region); '-' for stdin.")] = None,
        output: Annotated[Optional[str], typer.Option("--output", "-o", help="Output: .npz (tfmodisco-lite), .bedgraph, .tsv (.gz: compressed; .bedgraph.gz also tabix-indexed); with --variants .tsv[.gz] or .vcf.gz.")] = None,
        model: ModelOpt = None,
        method: Annotated[str, typer.Option("--method", help="saliency, integrated-gradients, deeplift, deepshap or ism "
                                                      "(deeplift/deepshap are refused where captum's rules miss "
                                                      "f(x) - f(baseline), as on the bundled model).")] = "saliency",
        target: Annotated[Optional[str], typer.Option("--target", help="Class/output name or index, or 'predicted' (default: the positive class of a 2-class model).")] = None,
        baseline: Annotated[str, typer.Option("--baseline", help="IG/DeepLIFT baseline: uniform, shuffle (dinucleotide) or zeros.")] = "uniform",
        steps: Annotated[int, typer.Option("--steps", help="Integrated-gradients steps.")] = 50,
        n_baselines: Annotated[int, typer.Option("--baselines", help="Shuffled baselines to average (--baseline shuffle, deepshap).")] = 1,
        ism_window: Annotated[Optional[str], typer.Option("--ism-window", help="Mutate only bases START-END of each record (1-based, inclusive).")] = None,
        rc_average: Annotated[Optional[bool], typer.Option("--rc-average/--no-rc-average", help="Average with the reverse complement (default: as the model was trained).")] = None,
        variants: Annotated[Optional[Path], typer.Option("--variants", help="VCF/BCF of variants to score (needs --reference).")] = None,
        reference: Annotated[Optional[Path], typer.Option("--reference", help="Indexed reference FASTA for --variants.")] = None,
        skip_mismatch: Annotated[bool, typer.Option("--skip-mismatch", help="Skip variants whose REF differs from the reference (count on stderr).")] = False,
        max_indel: Annotated[Optional[int], typer.Option("--max-indel", help="Longest indel to score (default: a quarter of the window).")] = None,
        window: Annotated[Optional[int], typer.Option("--window", help="Cut inputs into windows of this length / variant window (default: the model's for variants and for a genome longer than it, as classify scans one).")] = None,
        stride: Annotated[Optional[int], typer.Option("--stride", help="Step between windows (default: --window).")] = None,
        last: Annotated[str, typer.Option("--last", help="Last partial window: shift (end at the contig end), "
                                          "pad (keep the shorter tail) or drop.")] = "shift",
        region: RegionOpt = None,
        regions: RegionsOpt = None,
        plot: Annotated[Optional[Path], typer.Option("--plot", help="Folder for PNG logos of the top records (all records with --region).")] = None,
        top: Annotated[int, typer.Option("--top", help="How many top-scoring records --plot draws.")] = 5,
        plot_width: Annotated[int, typer.Option("--plot-width", help="Bases per logo (centred on the strongest attributions).")] = 200,
        fmt: FormatOpt = None,
        batch_size: Annotated[str, typer.Option("--batch-size", "-b", help="Sequences per forward pass (IG: interpolation steps per pass), or auto (a budget of units per pass).")] = "auto",
        device: DeviceOpt = "auto",
        precision: PrecisionOpt = "auto",
    ) -> None:
        """Explain predictions: per-base attributions, logos, variant effects.

        Example: hyena-glt interpret promoters.fa --method integrated-gradients -o attr.npz --plot logos/

        Variants: hyena-glt interpret --variants calls.vcf.gz --reference genome.fa -o effects.tsv

        Integrated gradients and DeepLIFT differentiate through the base embedding; hashed n-gram embeddings
        and patch boundaries are discrete and held at their values for the real sequence. Saliency takes
        first-order substitution effects at the embedding layer (n-grams included). ISM and variant scoring
        rerun the whole model. Scores: log-odds of the target class (classification), logit (multi-label), output
        (regression).
        """
        from hyena_glt import interpret as lib

        batch_size = lib.parse_batch_size(batch_size)
        if stride is not None and window is None:
            raise UsageError("--stride needs --window")
        if window is not None and window < 1:  # one message for sequences and --variants
            raise UsageError(f"--window must be at least 1 (got {window})")
        check_files([*(inputs or []), variants, reference, regions], [output], folders=[plot])
        if variants is not None:
            if inputs:
                raise UsageError("give either sequence inputs or --variants, not both")
            if reference is None:
                raise UsageError("--variants needs --reference (the genome the VCF was called against)")
            if output is None and plot is None:
                raise UsageError("--variants needs -o effects.tsv or effects.vcf.gz")
            kind = output_format(output, fmt, VARIANT_FORMATS, "tsv")
            if kind == "vcf" and (output == "-" or not output.endswith(".gz")):
                raise UsageError("VCF output is bgzipped and tabix-indexed: name it *.vcf.gz")
            _, metadata, scorer = lib.load_scorer(model, device=device, precision=precision, rc_average=rc_average)
            names = lib.output_names(metadata, scorer.num_outputs)
            width = window if window is not None else metadata.get("window") or 1000
            scan = lib.scan_variants(variants, reference, scorer, window=int(width),
                                     batch_size=batch_size or lib.auto_batch_size(scorer, 2 * int(width)),
                                     skip_mismatch=skip_mismatch, max_indel=max_indel)
            if scan.skipped_mismatch:
                log.warning("skipped %d variant allele(s) whose REF does not match the reference", scan.skipped_mismatch)
            if scan.skipped_unsupported:
                log.warning("skipped %d symbolic allele(s) or indel(s) longer than --max-indel", scan.skipped_unsupported)
            if scan.skipped_ambiguous:
                log.warning("skipped %d ALT allele(s) with IUPAC ambiguity codes (R, Y, ...)", scan.skipped_ambiguous)
            if scan.skipped_no_alt:
                log.warning("skipped %d record(s) with no ALT allele ('.')", scan.skipped_no_alt)
            if scan.skipped_too_long:
                log.warning("skipped %d allele(s) longer than the %d-base window (or than their contig)",
                            scan.skipped_too_long, int(width))
            from hyena_glt.interpret import variants as vmod

            if kind == "vcf":
                vmod.write_effects_vcf(output, scan, scorer.task, names, Path(str(model or "default")).name)
            else:
                vmod.write_effects_tsv(output, scan, scorer.task, names)
            log.info("scored %d variant allele(s)", len(scan.effects))
            return

        if not inputs:
            raise UsageError("give sequences to explain (or --variants VCF --reference FASTA)")
        if output is None and plot is None:
            raise UsageError("nothing to write: give -o OUT (.npz, .bedgraph, .tsv) and/or --plot DIR")
        if method not in lib.METHODS:
            raise UsageError(f"unknown --method '{method}' (use one of: {', '.join(lib.METHODS)})")
        if baseline not in lib.BASELINES:
            raise UsageError(f"unknown --baseline '{baseline}' (use one of: {', '.join(lib.BASELINES)})")
        if steps < 1 or n_baselines < 1 or top < 1 or plot_width < 1:
            raise UsageError("--steps, --baselines, --top and --plot-width must be at least 1")
        kind = output_format(output, fmt, ATTRIBUTION_FORMATS, "tsv") if output is not None else None
        if kind == "npz":
            refuse_binary_to_terminal(output)
        if ism_window is not None and method != "ism":
            raise UsageError("--ism-window only applies to --method ism")
        # an option that the method does not read would be silently ignored: refused, as --ism-window is
        uses = {"steps": ("integrated-gradients",), "baseline": ("integrated-gradients", "deeplift", "deepshap"),
                "n_baselines": ("integrated-gradients", "deepshap")}
        for name, methods in uses.items():
            if given(ctx, name) and method not in methods:
                raise UsageError(f"{flag(name)} does not apply to --method {method} (only to {', '.join(methods)})")
        if method == "integrated-gradients" and baseline != "shuffle" and given(ctx, "n_baselines"):
            raise UsageError(f"--baselines averages shuffled baselines: it needs --baseline shuffle (got {baseline})")
        for name in given(ctx, "max_indel", "skip_mismatch"):  # (the --variants run has returned above)
            raise UsageError(f"{name} only applies with --variants")
        span = _parse_span(ism_window)
        model_obj, metadata, scorer = lib.load_scorer(model, device=device, precision=precision, rc_average=rc_average)
        names = lib.output_names(metadata, scorer.num_outputs)
        chosen = lib.resolve_target(metadata, scorer.num_outputs, target)

        from hyena_glt.io.sequences import check_names, read_many, sliding_windows

        # RNA reads as DNA (U as T), as the nucleotide tokenizer and the one-hot both read it.
        records = read_many(inputs, regions=region, regions_bed=regions, alphabet="nucleotide")
        if window is None and span is None:
            window, records = _genome_window(records, metadata.get("window"))
        # bedGraph and per-position TSV rows (and windows) are keyed by contig and position, and a record
        # without coordinates is its own contig: its name must be unique there (checked as records stream).
        keyed = kind in ("bedgraph", "tsv") or window is not None
        what = {"bedgraph": "bedGraph output", "tsv": "per-position TSV output", "npz": ".npz output"}.get(kind, "logos")
        records = check_names(records, "windows" if window is not None and kind == "npz" else what, unique=keyed)
        if window is not None:
            records = sliding_windows(records, window, stride, last)
        results = lib.attribute_records(
            scorer, progress(records, "interpret"), method, chosen, class_names=names, batch_size=batch_size,
            ism_window=span, seed=settings().seed, baseline=baseline, steps=steps, n_baselines=n_baselines)

        kept, best, count = [], [], 0
        for count, rec in enumerate(results, 1):
            if kind is not None:
                kept.append(rec)
            if plot is not None:
                item = (rec.score, -count, rec)
                if region or regions:
                    best.append(item)
                elif len(best) < top:
                    heapq.heappush(best, item)
                else:
                    heapq.heappushpop(best, item)
            if rec.delta is not None and abs(rec.delta) > 0.05 * (1 + abs(rec.score)):
                log.warning("record '%s': attributions miss f(x) - f(baseline) by %.3g; raise --steps", rec.name, rec.delta)
        if count == 0:  # nothing to attribute: no output to write, unlike classify's empty table
            raise InputError("no records in the given region(s)" if region or regions else "no sequences in the input",
                             path=", ".join(inputs))

        from hyena_glt.interpret import outputs, plots

        if kind == "npz":
            outputs.write_npz(output, kept, method)
        elif kind == "bedgraph":
            outputs.write_bedgraph(output, kept, f"hyena-glt {method} {chosen.name}")
        elif kind == "tsv":
            outputs.write_tsv(output, kept)
        if plot is not None:
            chosen_records = [item[2] for item in sorted(best, key=lambda t: (-t[0], -t[1]))] if not (region or regions) \
                else [item[2] for item in best]
            written = plots.plot_records(chosen_records, plot, model=model_obj, scorer=scorer, width=plot_width)
            log.info("wrote %d logo(s) to %s", len(written), plot)
        log.info("explained %d record(s) with %s", count, method)

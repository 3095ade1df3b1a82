"""`hyena-glt benchmark`: latency / throughput / peak memory sweep against an attention baseline."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from hyena_glt.errors import UsageError

from ..common import DeviceOpt, OutputOpt, PrecisionOpt, check_files, flag, given, output_format, progress, settings


def register(app: typer.Typer) -> None:
    @app.command("benchmark")
    def benchmark(
        ctx: typer.Context,
        lengths: Annotated[str, typer.Option("--lengths", help="Sequence lengths (k = 1024, M = 1024²).")] = "1k,4k,16k,32k,64k,128k",
        batch_sizes: Annotated[str, typer.Option("--batch-sizes", help="Batch sizes, comma-separated.")] = "1",
        presets: Annotated[str, typer.Option("--presets", help="Model presets: tiny, small, base.")] = "tiny",
        patchers: Annotated[str, typer.Option("--patchers", help="Patchers to time: none, static:K, entropy (with --entropy-model).")] = "none,static:4",
        entropy_model: Annotated[Optional[str], typer.Option("--entropy-model", help="LM folder (from `train --task lm`) for --patchers entropy; its time is included.")] = None,
        attention: Annotated[bool, typer.Option("--attention/--no-attention", help="Also time the same-size SDPA Transformer.")] = True,
        task: Annotated[str, typer.Option("--task", help="Head to time: classification (sequence-level) or token_classification / lm (per-unit).")] = "classification",
        repeats: Annotated[int, typer.Option("--repeats", help="Timed forwards per configuration (after one warm-up).")] = 3,
        timeout: Annotated[float, typer.Option("--timeout", help="Seconds per configuration before it is marked 'timeout'.")] = 300.0,
        isolate: Annotated[Optional[bool], typer.Option("--isolate/--no-isolate", help="One subprocess per configuration (default on CPU: honest peak RSS).")] = None,
        quick: Annotated[bool, typer.Option("--quick", help="Small sweep (tiny; 1k, 4k; none, static:4; 2 repeats): under a minute on 2 cores.")] = False,
        device: DeviceOpt = "auto",
        precision: PrecisionOpt = "fp32",
        output: OutputOpt = "-",
        plot: Annotated[Optional[str], typer.Option("--plot", help="Also draw throughput and memory vs length (log-log) to this PNG.")] = None,
    ) -> None:
        """Time Hyena-GLT forwards over sequence lengths, against a same-size attention Transformer.

        One TSV row per configuration: model, preset, patcher, task, params, batch, length, median_ms,
        nt_per_s, peak_mem_mb, device, precision, status (ok / oom / timeout).

        Example: hyena-glt -@ 2 benchmark --lengths 1k,32k,128k --patchers none,static:4 -o bench.tsv --plot bench.png
        """
        from hyena_glt import benchmark as bench
        from hyena_glt import runtime
        from hyena_glt.io.writers import text_output

        check_files([entropy_model], [output, plot])
        if output != "-":
            output_format(output, None, ("tsv",), "tsv", has_format_option=False)
        if plot:
            output_format(plot, None, ("png",), "png", has_format_option=False)
        if timeout <= 0:
            raise UsageError(f"--timeout must be positive (got {timeout})")
        if quick:
            explicit = given(ctx, "lengths", "batch_sizes", "presets", "patchers", "repeats")
            if explicit:
                raise UsageError(f"--quick sets its own sweep: drop {', '.join(explicit)} (or drop --quick)")
            lengths, batch_sizes, presets, patchers = (bench.QUICK[k] for k in ("lengths", "batch_sizes", "presets", "patchers"))
            repeats = bench.QUICK["repeats"]
            if entropy_model:
                patchers += ",entropy"
        dev = runtime.resolve_device(device)
        prec = runtime.resolve_precision(precision, dev)
        cases = bench.plan(bench.parse_lengths(lengths), bench.parse_ints(batch_sizes, flag("batch_sizes")),
                           [p.strip() for p in presets.split(",")], [p.strip() for p in patchers.split(",")],
                           attention, task, entropy_model)
        # Each configuration is also logged as it starts (stderr); threads as set by the global -@.
        rows = list(progress(bench.run(cases, dev, prec, repeats, settings().threads, timeout, isolate),
                             "benchmark", total=len(cases)))
        with text_output(output) as fh:
            fh.write("\t".join(bench.COLUMNS) + "\n")
            for row in rows:
                fh.write(row.tsv() + "\n")
        if plot:
            bench.plot(rows, plot)

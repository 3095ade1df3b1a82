"""`hyena-glt embed`: embeddings of sequences (or of genome windows) into an ``.npz``.

Which rows: with ``--window N``, records longer than N are embedded window by window (each row carries its
coordinates); ``--window 0`` embeds whole records. By default, record by record: a record longer than the
model's window without base qualities (a genome or contig, not a read or a table row) is embedded in the model's
windows, and every other record (reads, short sequences) is one row, whatever the order of the records. The
embeddings are streamed to disk as they are computed, so a genome never has to fit in memory. ``--shard I/N`` embeds part I of N (blocks of records or windows, as in ``classify``);
the shards' rows together are the rows of a full run. Layout of the ``.npz`` (``np.load`` needs no pickle):

* ``names`` (N,), ``contig`` (N,), ``start``/``end`` (N,) 0-based half-open (a record without
  coordinates: its id, 0, its length), ``lengths`` (N,)
* ``--pool mean|cls``: ``embeddings`` (N, D)
* ``--pool none``: ``embeddings`` (sum of lengths, D), one row per unit, and ``offsets`` (N+1,): item i is
  ``embeddings[offsets[i]:offsets[i+1]]``
* ``metadata``: a JSON string (model, pool, layer, window, stride, dtype)
"""

from __future__ import annotations

import itertools
import logging
from pathlib import Path
from typing import Annotated, Optional

import typer

from hyena_glt.errors import InputError, UsageError

from ..common import (
    DeviceOpt,
    InputsArg,
    ModelOpt,
    PrecisionOpt,
    ReferenceOpt,
    RegionOpt,
    RegionsOpt,
    ShardOpt,
    check_files,
    output_format,
    parse_shard,
    progress,
    refuse_binary_to_terminal,
)

log = logging.getLogger("hyena_glt")


def register(app: typer.Typer) -> None:
    @app.command("embed")
    def embed(
        inputs: InputsArg,
        output: Annotated[str, typer.Option("--output", "-o", help="Output .npz ('-' for stdout).")],
        model: ModelOpt = None,
        pool: Annotated[str, typer.Option("--pool", help="mean, cls, or none (one row per position).")] = "mean",
        layer: Annotated[Optional[int], typer.Option("--layer", help="Hidden states: 0 = the input of the first "
                                                      "block, N = the output of block N, -1 = the last block's "
                                                      "(before the final norm); default: the final states.")] = None,
        dtype: Annotated[str, typer.Option("--dtype", help="float32 or float16.")] = "float32",
        window: Annotated[Optional[int], typer.Option("--window", help="Cut records longer than this into windows "
                                                       "(default: the model's window, for records without base "
                                                       "qualities; 0: whole records).")] = None,
        stride: Annotated[Optional[int], typer.Option("--stride", help="Window step (default: the window).")] = None,
        last: Annotated[str, typer.Option("--last", help="Last partial window: shift, pad or drop.")] = "shift",
        region: RegionOpt = None,
        regions: RegionsOpt = None,
        reference: ReferenceOpt = None,
        batch_size: Annotated[str, typer.Option("--batch-size", help="Sequences per batch, or auto.")] = "auto",
        shard: ShardOpt = None,
        device: DeviceOpt = "auto",
        precision: PrecisionOpt = "auto",
    ) -> None:
        """Embed sequences (pooled or per position) into an .npz.

        Example: hyena-glt embed example_data/lambda_reads_1.fq -o reads.npz --pool mean
        """
        from hyena_glt.inference import EMBED_DTYPES, POOLS, NpzEmbeddingWriter, Predictor, looks_like_genome
        from hyena_glt.io.sequences import check_names, read_many

        check_files([*inputs, regions, reference], [output])
        output_format(output, None, ("npz",), "npz", has_format_option=False)
        refuse_binary_to_terminal(output)
        shard_index, shard_count = parse_shard(shard)
        if pool not in POOLS:
            raise UsageError(f"unknown --pool '{pool}' (use {', '.join(POOLS)})")
        if dtype not in EMBED_DTYPES:
            raise UsageError(f"unknown --dtype '{dtype}' (use {', '.join(EMBED_DTYPES)})")
        whole_records = window == 0
        if whole_records and stride is not None:
            raise UsageError("--stride needs windows; --window 0 embeds whole records")
        predictor = Predictor.from_pretrained(
            model, device=device, precision=precision, batch_size=batch_size,
            window=None if whole_records else window, stride=stride, last=last, rc_average=False)

        records = read_many(inputs, regions=region, regions_bed=regions, reference=reference,
                            alphabet=predictor.alphabet)
        first = next(records, None)
        if first is None and not (region or regions):
            raise InputError("no sequences in the input", path=", ".join(inputs))
        if first is None:  # no reads in the regions: an empty result, as `samtools view` gives
            log.warning("%s: no records in the given region(s)", ", ".join(inputs))
        # Windows when asked for (--window N); by default, record by record, for the records that look like a
        # genome (longer than the window, no base qualities, not a table row), while reads stay whole.
        windowed = False if predictor.window is None or whole_records else (True if window is not None else "genomes")
        records = itertools.chain([first] if first is not None else [], records)
        # A window's contig is its record's name (unless the record has coordinates): unique names there.
        genomes = []  # by default: whether some record was windowed (the metadata then gives the window)

        def keyed(record) -> bool:
            genome = looks_like_genome(record, predictor.window)
            if genome and not genomes:
                genomes.append(record.id)
            return genome

        records = check_names(records, "windowed embedding output" if windowed is True else "embedding output")
        if windowed:  # (a record without a name is reported by the check above)
            records = check_names(records, "windowed embedding output", unique=True if windowed is True else keyed)
        records = progress(records, "embedding")
        # Rows are staged beside the output (same file system, where the user has room), not in /tmp.
        staging = None if output == "-" else str(Path(output).resolve().parent)
        with NpzEmbeddingWriter(predictor.embedding_dim, dtype=dtype, pool=pool, tmp_dir=staging) as writer:
            for batch in predictor.embed(records, pool=pool, layer=layer, windowed=windowed,
                                           shard=(shard_index, shard_count)):
                writer.add(batch)
            windowed = windowed is True or bool(genomes)
            metadata = {
                "model": predictor.metadata.get("model_dir"), "task": predictor.task, "pool": pool,
                "layer": layer, "dtype": dtype, "window": predictor.window if windowed else None,
                "stride": predictor.stride if windowed else None, "last": last if windowed else None,
                "shard": f"{shard_index + 1}/{shard_count}",
            }
            writer.write(output, metadata)
            log.info("wrote %d embedding(s) of dimension %d to %s", len(writer.names), predictor.embedding_dim,
                     "stdout" if output == "-" else output)


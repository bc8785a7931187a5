"""Market-data bytes to Arrow record batches (docs/architecture.md §4, file-level rules).

The byte chunks (an S3 body, a local file) are decompressed when they start with the gzip magic
bytes, checked (UTF-8, no NUL byte, no line longer than MAX_RECORD_BYTES), stripped of a BOM,
and their header line is read here, by name. The data rows are cut into segments of about
BLOCK_SIZE bytes between records (quotes balanced) and each segment is parsed by pyarrow's CSV
reader into one record batch of string columns (only the four named columns). Rows with the
wrong field count are counted by the reader's invalid-row handler. Parsing runs a block or
two ahead in a thread, so that it overlaps the compute kernels on the current block; memory
stays a few blocks whatever the file size.
"""

from __future__ import annotations

import codecs
import csv
import queue
import threading
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import chain
from typing import Final

import pyarrow as pa
import pyarrow.csv as pa_csv

from handlers.core.errors import InvalidFileError

REQUIRED_COLUMNS: Final = ("timestamp", "symbol", "price", "size")
# Arrow parses this many bytes at a time, one record batch each: big enough that per-batch
# overheads (a group-by, a few Python look-ups per symbol) vanish, small enough to stay a few
# MB of memory.
BLOCK_SIZE: Final = 4 * 1024 * 1024
# A line (or a quoted record) longer than this is not a trade: the file is rejected rather than
# buffered without bound.
MAX_RECORD_BYTES: Final = 1024 * 1024
GZIP_MAGIC: Final = b"\x1f\x8b"
_GZIP_OUTPUT_LIMIT: Final = 1024 * 1024  # bounds memory even for a gzip bomb
_PREFETCH: Final = 2  # batches parsed ahead of the consumer


@dataclass(slots=True)
class Block:
    """One record batch of the four columns (timestamp, symbol, price, size) as strings.

    `skipped` are the record numbers of the rows the reader dropped inside this block (wrong
    field count), in file order; `first_record` the record number of the block's first
    record, good or not. (Blank lines are rows of empty fields here: `marketdata` skips them.)
    """

    batch: pa.RecordBatch
    first_record: int
    skipped: list[int] = field(default_factory=list)


@dataclass(slots=True)
class Header:
    picks: tuple[int, int, int, int]  # indexes of timestamp, symbol, price, size
    width: int
    line: int  # line number of the header


def read_blocks(chunks: Iterable[bytes], *, block_size: int = BLOCK_SIZE) -> Iterator[Block]:
    """The data rows as blocks; raises InvalidFileError for a file-level rejection."""
    stream = _CheckedStream(_maybe_gunzip(chunks))
    header = stream.take_header()
    if header is None:
        raise InvalidFileError("empty file: no header line")
    return _prefetched(_arrow_blocks(stream, header, block_size))


# --- bytes ------------------------------------------------------------------------------------


def _maybe_gunzip(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """The chunks, decompressed if the stream starts with the gzip magic bytes."""
    it = iter(chunks)
    head = b""
    for chunk in it:
        head += chunk
        if len(head) >= len(GZIP_MAGIC):
            break
    if head.startswith(GZIP_MAGIC):
        yield from _gunzip(chain((head,), it))
        return
    if head:
        yield head
    yield from it


def _gunzip(chunks: Iterable[bytes]) -> Iterator[bytes]:
    decompressor = zlib.decompressobj(wbits=31)
    fed = False  # has the current gzip member received any input?
    for data in chunks:
        while data:
            fed = True
            try:
                out = decompressor.decompress(data, _GZIP_OUTPUT_LIMIT)
            except zlib.error as exc:
                raise InvalidFileError(
                    "corrupt gzip data: the file cannot be decompressed"
                ) from exc
            if out:
                yield out
            if decompressor.eof:
                # Concatenated gzip members are one stream (as gzip(1) reads them).
                data = decompressor.unused_data
                decompressor = zlib.decompressobj(wbits=31)
                fed = False
            else:
                data = decompressor.unconsumed_tail
    if fed and not decompressor.eof:
        tail = decompressor.flush()
        if tail:
            yield tail
        if not decompressor.eof:
            raise InvalidFileError("truncated gzip data: the file ends mid-stream")


class _CheckedStream:
    """Checked chunks, the header line, then segments of whole records for Arrow."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = b""
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self._lines = 1  # line number at the end of what was checked so far
        self._line_bytes = 0  # bytes since the last newline
        self._first = True
        self._done = False

    def _next_chunk(self) -> bytes | None:
        for chunk in self._chunks:
            if chunk:
                return self._check(chunk)
        if not self._done:
            self._done = True
            try:
                self._decoder.decode(b"", final=True)
            except UnicodeDecodeError as exc:
                raise InvalidFileError(
                    f"not UTF-8: truncated sequence on line {self._lines}"
                ) from exc
        return None

    def _check(self, chunk: bytes) -> bytes:
        if self._first:
            self._first = False
            chunk = chunk.removeprefix(codecs.BOM_UTF8)
        try:
            self._decoder.decode(chunk)
        except UnicodeDecodeError as exc:
            at = self._lines + chunk.count(b"\n", 0, max(exc.start, 0))
            raise InvalidFileError(f"not UTF-8: invalid byte sequence on line {at}") from exc
        nul = chunk.find(b"\x00")
        if nul >= 0:
            at = self._lines + chunk.count(b"\n", 0, nul)
            raise InvalidFileError(f"not a CSV text file: NUL byte on line {at}")
        newlines = chunk.count(b"\n")
        if newlines:
            self._line_bytes = len(chunk) - chunk.rfind(b"\n") - 1
        else:
            self._line_bytes += len(chunk)
        self._lines += newlines
        if self._line_bytes > MAX_RECORD_BYTES:
            raise InvalidFileError(
                f"line {self._lines} is longer than {MAX_RECORD_BYTES} bytes: not CSV"
            )
        return chunk

    def take_header(self) -> Header | None:
        """Consume blank lines and the header line; None if the file has no non-blank line."""
        line_no = 1
        while True:
            while b"\n" not in self._buffer:
                chunk = self._next_chunk()
                if chunk is None:
                    break
                self._buffer += chunk
            end = self._buffer.find(b"\n")
            raw = self._buffer if end < 0 else self._buffer[:end]
            self._buffer = b"" if end < 0 else self._buffer[end + 1 :]
            text = raw.decode("utf-8").rstrip("\r")  # checked: decodes
            if text.strip():
                return _parse_header(text, line_no)
            if end < 0:
                return None
            line_no += 1

    def segments(self, size: int, first_line: int) -> Iterator[bytes]:
        """The data after the header, about `size` bytes at a time, cut between records."""
        pieces = [self._buffer] if self._buffer else []
        held = len(self._buffer)
        self._buffer = b""
        line = first_line
        want = size
        while True:
            chunk = None
            while held < want:
                chunk = self._next_chunk()
                if chunk is None:
                    break
                pieces.append(chunk)
                held += len(chunk)
            data = b"".join(pieces)
            if chunk is None and held < want:  # the end of the file
                if data:
                    yield data
                return
            cut = _record_cut(data)
            if cut == 0:
                if held > size + MAX_RECORD_BYTES:
                    raise InvalidFileError(
                        f"unbalanced quotes from line {line}: not CSV (RFC 4180)"
                    )
                want = held + 1  # no whole record yet: read on
                pieces = [data]
                continue
            want = size
            line += data.count(b"\n", 0, cut)
            yield data[:cut]
            pieces = [data[cut:]]
            held = len(data) - cut


def _record_cut(data: bytes) -> int:
    """Length of the longest prefix of whole lines with balanced quotes (0 if none)."""
    cut = data.rfind(b"\n") + 1
    if cut == 0 or data.count(b'"', 0, cut) % 2 == 0:
        return cut
    # A quoted field holds a line break across the last newline: find the last line end
    # outside quotes (rare, so line by line is fine).
    best = 0
    offset = 0
    odd = False
    for line in data[:cut].split(b"\n")[:-1]:
        offset += len(line) + 1
        if line.count(b'"') % 2:
            odd = not odd
        if not odd:
            best = offset
    return best


def _parse_header(text: str, line: int) -> Header:
    try:
        names = next(csv.reader([text]))
    except csv.Error as exc:
        raise InvalidFileError(f"wrong header on line {line}: not CSV") from exc
    normalised = [name.strip().lower() for name in names]
    missing = [col for col in REQUIRED_COLUMNS if col not in normalised]
    duplicated = [col for col in REQUIRED_COLUMNS if normalised.count(col) > 1]
    if missing or duplicated:
        problem = (
            f"missing {', '.join(missing)}" if missing else f"repeated {', '.join(duplicated)}"
        )
        raise InvalidFileError(
            f"wrong header on line {line}: expected columns {','.join(REQUIRED_COLUMNS)} "
            f"({problem})"
        )
    ts, sym, price, size = (normalised.index(col) for col in REQUIRED_COLUMNS)
    return Header((ts, sym, price, size), len(names), line)


# --- Arrow ------------------------------------------------------------------------------------


def _arrow_blocks(stream: _CheckedStream, header: Header, block_size: int) -> Iterator[Block]:
    """Each segment parsed by Arrow on its own: memory is a segment and its batch, however
    big the file (Arrow's own streaming reader reads up to 32 blocks ahead)."""
    skipped: list[int] = []
    base = header.line  # record number before the current segment's first record

    def on_invalid(row: pa_csv.InvalidRow) -> str:
        if row.text.count('"') % 2:
            return "error"  # a quote opened and never closed: the rest of the file is one field
        # row.number counts the segment's records from 1 (known: the reader is single-threaded)
        skipped.append(base + (row.number or 0))
        return "skip"

    names = [f"c{i}" for i in range(header.width)]
    picked = [names[i] for i in header.picks]
    parse = pa_csv.ParseOptions(
        newlines_in_values=True, ignore_empty_lines=False, invalid_row_handler=on_invalid
    )
    convert = pa_csv.ConvertOptions(
        column_types=dict.fromkeys(picked, pa.string()),
        include_columns=picked,
        check_utf8=False,  # checked on the bytes, with the line number
        strings_can_be_null=False,
        quoted_strings_can_be_null=False,
    )
    for segment in stream.segments(block_size, header.line + 1):
        # one Arrow block per segment, so one batch and one record numbering
        read = pa_csv.ReadOptions(
            use_threads=False, block_size=len(segment) + 1, column_names=names
        )
        try:
            table = pa_csv.read_csv(pa.py_buffer(segment), read, parse, convert)
        except pa.ArrowInvalid as exc:
            raise _not_csv(exc, base + 1) from exc
        batch = table.combine_chunks().to_batches()
        batch = batch[0] if batch else pa.RecordBatch.from_pydict(dict.fromkeys(picked, []))
        yield Block(batch, base + 1, skipped)
        base += batch.num_rows + len(skipped)
        skipped = []


def _not_csv(exc: pa.ArrowInvalid, record: int) -> InvalidFileError:
    return InvalidFileError(f"malformed CSV from about line {record}: {str(exc)[:200]}")


def _prefetched(blocks: Iterator[Block]) -> Iterator[Block]:
    """`blocks`, produced one or two ahead in a thread (pyarrow parses without the GIL)."""
    out: queue.Queue[tuple[Block | None, BaseException | None]] = queue.Queue(_PREFETCH)
    stop = threading.Event()

    def produce() -> None:
        try:
            for block in blocks:
                if stop.is_set():
                    return
                out.put((block, None))
        except BaseException as exc:  # handed to the consumer, which re-raises it
            out.put((None, exc))
            return
        out.put((None, None))

    thread = threading.Thread(target=produce, name="csv-reader", daemon=True)
    thread.start()
    try:
        while True:
            block, error = out.get()
            if error is not None:
                raise error
            if block is None:
                return
            yield block
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                out.get(timeout=0.05)
            except queue.Empty:
                pass
        thread.join()

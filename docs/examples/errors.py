"""Typed exceptions: every problem the library can name is a HyenaGLTError, with the file and record it is about."""
import logging

from hyena_glt.errors import DeviceError, HyenaGLTError, InputError, ModelError, UsageError
from hyena_glt.inference import Predictor
from hyena_glt.io.sequences import read_sequences

# InputError: the data (format, record, region). UsageError: the arguments. ModelError: the model directory.
# DeviceError: a device or precision this machine lacks. A plain HyenaGLTError is a runtime failure (out of
# memory on a single sequence, NaN scores). exit_code is what the CLI exits with.
for cls in (HyenaGLTError, InputError, UsageError, ModelError, DeviceError):
    print(f"{cls.__name__:13} exit_code {cls.exit_code}  {' < '.join(c.__name__ for c in cls.__mro__[:-3])}")

predictor = Predictor.from_pretrained(None, device="cpu")
attempts = {
    "missing model": lambda: Predictor.from_pretrained("no_such_model"),
    "unknown contig": lambda: list(read_sequences("example_data/ex1.fa", regions=["chr1:1-100"])),
    "not a sequence file": lambda: list(read_sequences("example_data/README.md")),
    "bad window": lambda: Predictor.from_pretrained(None, window=0),
    # a string where a list belongs (read letter by letter, it would be one prediction per base)
    "one string": lambda: list(predictor.predict("ACGTACGTAC")),
}
for what, attempt in attempts.items():
    try:
        attempt()
    except HyenaGLTError as err:  # str(err) is "FILE: record ID: problem"; each part is an attribute too
        print(f"{what}: {type(err).__name__}: {err}")

# Readers and predictors are lazy: a bad file raises when the first record is asked for, not at the call.
records = read_sequences("no_such.fa")
try:
    next(records)
except InputError as err:
    print("lazy:", repr(err.path), repr(err.problem))

# Warnings (records skipped, gaps) go to the "hyena_glt" logger, not to exceptions.
logging.basicConfig(format="%(name)s %(levelname)s: %(message)s")
print(len(list(predictor.predict(["ACGTACGTAC", "", "GGGCCC"]))[0].records), "predictions")

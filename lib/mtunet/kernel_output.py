"""What a notebook's kernel prints that says nothing about the study, and the output stream that
leaves it out.

The runner (``mtunet.commands.run_notebooks``) starts every kernel with :data:`KERNEL_ARGUMENTS`,
so TensorFlow's C++ start-up lines never reach the executed notebook or the terminal; the report
page (``mtunet.report.html``) drops the same lines from notebooks executed before that filter
existed. Both import it from here, so neither reaches into the other.
"""
from __future__ import annotations

import os
import re
import sys

# Lines TensorFlow's C++ code writes to the kernel's stderr that say nothing about the study, and
# only these (each is matched against a whole line). Abseil's LOG prints them: before anything
# calls absl::InitializeLog() it writes every severity to stderr with a one-line notice; its
# minimum level is a C++ call or a command-line flag, not an environment variable, so
# TF_CPP_MIN_LOG_LEVEL does not silence them. libtensorflow_framework.so.2 and the profiler
# plugin each link their own copy of Abseil: the first two lines come twice per kernel.
KERNEL_NOISE = (
    re.compile(r"WARNING: All log messages before absl::InitializeLog\(\) is called are written "
               r"to STDERR"),
    # on import; TF_ENABLE_ONEDNN_OPTS stays as it is: it changes the numbers
    re.compile(r"I\d{4} \S+\s+\d+ port\.cc:\d+\] oneDNN custom operations are on\. .*"),
    # on the first int32 op oneDNN would have run; TensorFlow falls back to Eigen by itself
    re.compile(r"E\d{4} \S+\s+\d+ util\.cc:\d+\] oneDNN supports DT_[A-Z0-9_]+ only on "
               r"platforms with AVX-512\. .*"),
)
# The kernel's output streams (ipykernel's, with that filter on what C/C++ code writes to fd 1/2).
KERNEL_ARGUMENTS = ("--IPKernelApp.outstream_class=mtunet.kernel_output.QuietOutStream",)


def is_kernel_noise(line: str) -> bool:
    """Whether a line (without its line break) is one of the KERNEL_NOISE lines."""
    line = line.rstrip("\r\n")
    return any(pattern.fullmatch(line) for pattern in KERNEL_NOISE)


def drop_kernel_noise(text: str) -> str:
    """`text` without its KERNEL_NOISE lines; every other character kept as it is."""
    if "oneDNN" not in text and "absl::" not in text:
        return text
    return "".join(line for line in text.splitlines(keepends=True) if not is_kernel_noise(line))


def _quiet_outstream_class():
    """ipykernel's OutStream, except for what C/C++ code (or a child process) writes straight to
    the kernel's file descriptors 1 and 2: ipykernel reads that from a pipe and sends it both to
    the notebook and to the kernel's own stderr (the runner's terminal); this class sends it on
    line by line, without the KERNEL_NOISE lines. Python's own writes are not touched. A partial
    line (a progress bar redrawn with \\r) goes on after 0.2 s without more output."""
    import select

    from ipykernel.iostream import OutStream

    class QuietOutStream(OutStream):
        def _watch_pipe_fd(self):
            fid = getattr(self, "_fid", None)
            copy = getattr(self, "_original_stdstream_copy", None)
            if fid is None or copy is None:  # an ipykernel this class does not know: unfiltered
                return super()._watch_pipe_fd()
            pending = b""
            try:
                while True:
                    if pending and not select.select([fid], [], [], 0.2)[0]:
                        self._send_on(pending)
                        pending = b""
                    data = os.read(fid, 65536)
                    if not data or not self._should_watch:  # closing: ipykernel wrote a NUL
                        break
                    pending += data
                    cut = pending.rfind(b"\n") + 1
                    if cut:
                        self._send_on(pending[:cut])
                        pending = pending[cut:]
                self._send_on(pending)
            except Exception:
                self._exc = sys.exc_info()

        def _send_on(self, data: bytes) -> None:
            text = drop_kernel_noise(data.decode(errors="replace"))
            if text:
                self.write(text)
                os.write(self._original_stdstream_copy, text.encode(errors="replace"))

    QuietOutStream.__qualname__ = QuietOutStream.__name__
    QuietOutStream.__module__ = __name__
    return QuietOutStream


def __getattr__(name: str):
    # the kernel imports mtunet.kernel_output.QuietOutStream (KERNEL_ARGUMENTS); built on
    # first use so that the runner never imports ipykernel itself
    if name == "QuietOutStream":
        cls = _quiet_outstream_class()
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""Native CPU kernels for the training step, compiled on first use, optional.

The kernels are one C file, ``kernels.c``, compiled with the machine's C compiler (``$CC``,
which may carry options, else ``cc``) into a shared library the first time a process asks for
it, cached under ``$XDG_CACHE_HOME/informer-nas/native`` (``~/.cache`` by default; a per-user
temporary directory where that is not writable) by a hash of the source, the compiler and the
CPU (it is built with ``-march=native``), and called through ``ctypes``. Where there is no
compiler, no OpenMP, no writable directory at all or no Linux-like loader,
or with ``INFORMER_NAS_NATIVE=0``, ``kernels()`` is ``None`` and each caller keeps its ATen
path: the numbers agree to float rounding either way, only the speed differs.

The libraries link ``libgomp.so.1`` by name; a process that imported torch already has
torch's copy loaded under that name, so kernels and ATen share one OpenMP thread pool and its
thread count (``torch.set_num_threads``).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shlex
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

DISABLE_VARIABLE = "INFORMER_NAS_NATIVE"  # "0" (or false, no, off): never build or load them
_OFF = {"0", "false", "no", "off"}
_SOURCES = Path(__file__).resolve().parent
STALE_SECONDS = 600  # a build takes about a second; its partial file is older only if killed
_FLAGS = ("-O3", "-march=native", "-fno-math-errno", "-fopenmp", "-shared", "-fPIC")


@dataclass(frozen=True)
class NativeStatus:
    """Whether a kernel library is in use, and where it is or why it is not."""

    loaded: bool
    detail: str  # where the library was loaded from, or why it is not in use


def cache_dir() -> Path:
    """Where compiled kernels are kept: ``$XDG_CACHE_HOME/informer-nas/native``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "informer-nas" / "native"


def _writable_cache_dir() -> Path:
    """``cache_dir()``, created; else (a read-only home, say) a per-user temporary one."""
    directory = cache_dir()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        if os.access(directory, os.W_OK):
            return directory
    except OSError:
        pass
    # shared with other users: ours alone, or not used (a library there is loaded as code)
    user = os.getuid() if hasattr(os, "getuid") else 0
    directory = Path(tempfile.gettempdir()) / f"informer-nas-{user}"
    directory.mkdir(mode=0o700, exist_ok=True)
    mode = directory.lstat()
    if directory.is_symlink() or mode.st_uid != user or mode.st_mode & 0o022:
        raise OSError(f"{directory} is not this user's own directory")
    (directory / "native").mkdir(exist_ok=True)
    return directory / "native"


def _cpu_signature() -> str:
    """The machine and its CPU's feature flags (what ``-march=native`` compiles for)."""
    flags = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            flags = next((line for line in cpuinfo if line.startswith("flags")), "")
    except OSError:
        pass
    return f"{platform.machine()} {flags}"


def _compile(source: Path, rebuild: bool = False) -> Path:
    """The cached library for ``source``, compiled now if absent (or ``rebuild``).

    Raises OSError, RuntimeError or subprocess.SubprocessError when it cannot be built.
    """
    found = shutil.which("cc") or shutil.which("gcc")
    compiler = shlex.split(os.environ.get("CC", "")) or ([found] if found else [])
    if not compiler:
        raise RuntimeError("no C compiler found (set CC)")
    version = subprocess.run([*compiler, "--version"], capture_output=True, text=True,
                             timeout=30, check=True).stdout
    key = hashlib.sha256("\0".join(
        [source.read_text(encoding="utf-8"), *compiler, version, " ".join(_FLAGS),
         _cpu_signature()]).encode()).hexdigest()[:16]
    target = _writable_cache_dir() / f"{source.stem}-{key}.so"
    if target.exists() and not rebuild:
        return target
    _remove_stale_builds(target.parent)
    fd, partial = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    try:
        done = subprocess.run([*compiler, *_FLAGS, str(source), "-o", partial],
                              capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no message"])[-1]
            raise RuntimeError(f"{Path(compiler[0]).name} failed: {last}")
        os.replace(partial, target)  # atomic: concurrent processes agree on one file
    finally:
        Path(partial).unlink(missing_ok=True)
    return target


def _remove_stale_builds(directory: Path) -> None:
    """Delete partial libraries left by builds that were killed (older than STALE_SECONDS;
    a younger one may be another process's build in progress)."""
    for partial in directory.glob(".*.tmp"):
        try:
            if time.time() - partial.stat().st_mtime > STALE_SECONDS:
                partial.unlink()
        except OSError:  # removed meanwhile by another process
            pass


class Kernels:
    """``kernels.c`` loaded: each method checks what it is given, then calls the C function."""

    def __init__(self, library: ctypes.CDLL) -> None:
        i64, ptr = ctypes.c_int64, ctypes.c_void_p
        self._gelu = library.gelu_bias_forward
        self._gelu.restype = None
        self._gelu.argtypes = [ptr, ptr, ptr, i64, i64, ptr, i64]
        self._sparsity = library.probsparse_sparsity
        self._sparsity.restype = ctypes.c_int
        strides = ctypes.POINTER(ctypes.c_int64)  # a (B, H, L, C) tensor's first three
        self._sparsity.argtypes = [ptr, strides, ptr, strides, ptr, ptr, i64, i64, i64, i64,
                                   i64, i64]
        dims: list[Any] = [i64, i64, i64, i64, i64, i64, i64, ctypes.c_float, ctypes.c_int]
        self._attention = library.probsparse_attention_forward
        self._attention.restype = ctypes.c_int
        self._attention.argtypes = [ptr, strides, ptr, strides, ptr, strides, ptr, ptr,
                                    strides, ptr, *dims]
        self._attention_backward = library.probsparse_attention_backward
        self._attention_backward.restype = ctypes.c_int
        self._attention_backward.argtypes = [ptr, strides, ptr, strides, ptr, strides, ptr,
                                             ptr, ptr, strides, ptr, strides, ptr, strides,
                                             ptr, strides, *dims]
        self._drops = library.drop_positions
        self._drops.restype = ctypes.c_int64
        self._drops.argtypes = [ptr, i64, ctypes.c_float, i64, i64, ptr]
        self._scale = library.scale_and_zero
        self._scale.restype = None
        self._scale.argtypes = [ptr, ptr, i64, ctypes.c_float, ptr, i64]

    @staticmethod
    def accepts(*tensors: Tensor) -> bool:
        """Float32, contiguous, on the CPU: what the kernels read."""
        return all(t.device.type == "cpu" and t.dtype == torch.float32 and t.is_contiguous()
                   for t in tensors)

    @staticmethod
    def accepts_heads(*tensors: Tensor) -> bool:
        """Float32 (B, H, L, C) tensors on the CPU whose last dimension is contiguous (the
        attention kernels take the other three strides as they are)."""
        return all(t.device.type == "cpu" and t.dtype == torch.float32 and t.dim() == 4
                   and t.stride(-1) == 1 and min(t.stride()) >= 0 for t in tensors)

    def drop_positions(self, uniform: Tensor, log_keep: float, start: int,
                       n_elements: int) -> Tensor:
        """Dropped positions from ``start`` on, from uniform draws in [0, 1) (float32, CPU):
        each gap is ``floor(ln(1 - u) / log_keep)``; the positions stop below ``n_elements``.
        As many positions as draws means the draws ran out first.
        """
        uniform = uniform.contiguous()
        positions = torch.empty(uniform.numel(), dtype=torch.int64)
        count = self._drops(uniform.data_ptr(), uniform.numel(), log_keep, start, n_elements,
                            positions.data_ptr())
        return positions[:count]

    def scale_and_zero(self, x: Tensor, scale: float, drops: Tensor) -> Tensor:
        """A new contiguous ``x * scale`` with the sorted flat positions ``drops`` zeroed.
        ``x`` must pass ``accepts``.
        """
        out = torch.empty_like(x, memory_format=torch.contiguous_format)
        drops = drops.contiguous()
        self._scale(x.data_ptr(), out.data_ptr(), x.numel(), scale, drops.data_ptr(),
                    drops.numel())
        return out

    def gelu_forward(self, hidden: Tensor, bias: Tensor, drops: Tensor) -> Tensor:
        """Overwrite ``hidden`` (rows, cols) with gelu(hidden + bias); return gelu' there.

        Both are zero at the flat positions ``drops``. ``hidden`` must pass ``accepts``.
        """
        rows, cols = hidden.shape
        bias = bias.detach().to(torch.float32).contiguous()
        drops = drops.to(torch.int64).contiguous()
        deriv = torch.empty_like(hidden)
        self._gelu(hidden.data_ptr(), bias.data_ptr(), deriv.data_ptr(), rows, cols,
                   drops.data_ptr(), drops.numel())
        return deriv

    def sparsity(self, queries: Tensor, keys: Tensor, sample: Tensor) -> Tensor:
        """ProbSparse's M (B, H, L_Q) for queries (B, H, L_Q, E), keys (B, H, L_K, E) and the
        sampled key indices (L_Q, U), each in [0, L_K). Both must pass ``accepts_heads``.
        """
        batch, heads, length_q, head_dim = queries.shape
        length_k, n_keys = keys.shape[2], sample.shape[1]
        sample = sample.to(torch.int64).contiguous()
        out = torch.empty(batch, heads, length_q, dtype=torch.float32)
        _check(self._sparsity(queries.data_ptr(), _strides(queries), keys.data_ptr(),
                              _strides(keys), sample.data_ptr(), out.data_ptr(), batch, heads,
                              length_q, length_k, n_keys, head_dim), "probsparse_sparsity")
        return out

    def attention_forward(self, queries: Tensor, keys: Tensor, values: Tensor, top: Tensor,
                          scale: float, is_masked: bool) -> tuple[Tensor, Tensor]:
        """ProbSparse attention's output (B, H, L_Q, D) and the kept queries' softmax weights
        (B, H, u, L_K), for the kept query indices ``top`` (B, H, u).

        Lazy queries get mean(V), or with ``is_masked`` (which needs L_Q == L_K) the
        cumulative sum of V; kept ones softmax(scale q K^T) V, causally masked with
        ``is_masked``. Inputs must pass ``accepts_heads``.
        """
        batch, heads, length_q, head_dim = queries.shape
        length_k, value_dim, n_top = keys.shape[2], values.shape[3], top.shape[2]
        top = top.to(torch.int64).contiguous()
        out = torch.empty(batch, heads, length_q, value_dim, dtype=torch.float32)
        probs = torch.empty(batch, heads, n_top, length_k, dtype=torch.float32)
        _check(self._attention(
            queries.data_ptr(), _strides(queries), keys.data_ptr(), _strides(keys),
            values.data_ptr(), _strides(values), top.data_ptr(), out.data_ptr(),
            _strides(out), probs.data_ptr(), batch, heads, length_q, length_k, head_dim,
            value_dim, n_top, scale, int(is_masked)), "probsparse_attention_forward")
        return out, probs

    def attention_backward(self, queries: Tensor, keys: Tensor, values: Tensor, top: Tensor,
                           probs: Tensor, grad_out: Tensor, scale: float,
                           is_masked: bool) -> tuple[Tensor, Tensor, Tensor]:
        """The gradients of Q, K and V from ``attention_forward``'s output gradient, each laid
        out in memory as its input is (where that layout is dense)."""
        batch, heads, length_q, head_dim = queries.shape
        length_k, value_dim, n_top = keys.shape[2], values.shape[3], top.shape[2]
        if grad_out.stride(-1) != 1 or min(grad_out.stride()) < 0:
            grad_out = grad_out.contiguous()
        grads = [_dense_like(t) for t in (queries, keys, values)]
        _check(self._attention_backward(
            queries.data_ptr(), _strides(queries), keys.data_ptr(), _strides(keys),
            values.data_ptr(), _strides(values), top.data_ptr(), probs.data_ptr(),
            grad_out.data_ptr(), _strides(grad_out), grads[0].data_ptr(), _strides(grads[0]),
            grads[1].data_ptr(), _strides(grads[1]), grads[2].data_ptr(), _strides(grads[2]),
            batch, heads, length_q, length_k, head_dim, value_dim, n_top, scale,
            int(is_masked)), "probsparse_attention_backward")
        return grads[0], grads[1], grads[2]


def _strides(x: Tensor) -> ctypes.Array[ctypes.c_int64]:
    """The (B, H, L) strides of a (B, H, L, C) tensor, as the C side's ``int64_t[3]``."""
    return (ctypes.c_int64 * 3)(*x.stride()[:3])


def _dense_like(x: Tensor) -> Tensor:
    """An uninitialised tensor shaped as ``x``, with its memory order when that is dense (a
    gradient then flows back through transposes and views without a copy)."""
    out = torch.empty_like(x)  # preserve_format: x's strides where x is dense
    return out if out.stride(-1) == 1 else torch.empty(x.shape, dtype=x.dtype)


def _check(code: int, name: str) -> None:
    if code != 0:
        raise MemoryError(f"{name}: out of memory for a scratch buffer")


_status = NativeStatus(False, "not requested yet")


@functools.cache
def kernels() -> Kernels | None:
    """The compiled kernels, or None (then ``status()`` says why)."""
    global _status
    setting = os.environ.get(DISABLE_VARIABLE, "1")
    if setting.strip().lower() in _OFF:
        _status = NativeStatus(False, f"turned off by {DISABLE_VARIABLE}={setting}")
        return None
    source = _SOURCES / "kernels.c"
    try:
        path = _compile(source)
        try:
            loaded = Kernels(ctypes.CDLL(str(path)))
        except (OSError, AttributeError):  # a damaged or foreign file in the cache: build anew
            path = _compile(source, rebuild=True)
            loaded = Kernels(ctypes.CDLL(str(path)))
    except (OSError, RuntimeError, subprocess.SubprocessError, AttributeError) as error:
        _status = NativeStatus(False, f"unavailable ({error}); using ATen's kernels")
        return None
    _status = NativeStatus(True, f"loaded from {path}")
    return loaded


def status() -> NativeStatus:
    """What the last ``kernels()`` call found."""
    return _status

"""Audio in: decode (soundfile, then ffmpeg), mono, resample (soxr), checks, synthetic tone.

Every problem with an input file is raised as :class:`AudioError` whose message is
one line naming the file, so scripts can print it and corpus runs can log it.

Hostile or broken headers are refused before any decoding or resampling work: sample rates
outside :data:`MIN_RATE_HZ` .. :data:`MAX_RATE_HZ`, a duration that the file's size cannot hold,
and ``.mat`` variables that are not a real numeric vector or matrix with a scalar rate. What a
file's size can hold depends on its container, not on soundfile's ``subtype`` (a FLAC's subtype is
``PCM_16``/``PCM_24``, the decoded sample format): a raw-PCM container (:data:`RAW_PCM_CONTAINERS`)
must hold its samples byte for byte; a compressed one may decode to at most its codec's
:data:`CODEC_MAX_EXPANSION` times its size (:data:`MAX_EXPANSION` for codecs not listed), or
:data:`FREE_DECODE_BYTES` whatever its size; a FLAC must also really reach the last sample its
header promises (:func:`check_soundfile`). A file whose length is unknown (a FLAC written to a pipe)
and anything soundfile cannot read is decoded by ffmpeg, which is stopped once its output passes the
same bound. Names passed to ffmpeg/ffprobe go through the ``file:`` protocol, so a name starting
with ``-`` (or holding ``:``) is always a file.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


class AudioError(Exception):
    """A one-line, user-facing problem with an input file (missing, empty, corrupt, too short)."""


#: Sample rates accepted from a file or a caller (Hz); anything else is a broken or hostile header.
MIN_RATE_HZ = 1000
MAX_RATE_HZ = 768000
#: Decoded float32 audio may be this many times the file's size (compressed formats whose codec
#: :data:`CODEC_MAX_EXPANSION` does not list, ``.mat`` files, callers that give no container) ...
MAX_EXPANSION = 64
#: ... or up to this many bytes whatever the file's size.
FREE_DECODE_BYTES = 256 * 2 ** 20
#: Most float32 bytes one byte of a file in each codec may decode to (codec names as ffprobe's
#: ``codec_name``; :func:`codec_of` names soundfile's formats the same way). Lossless and variable-rate
#: codecs spend next to nothing on digital silence, so the bound admits a file that is silent from
#: start to end. Measured on silent files of 1, 2 and 8 channels at 44.1-384 kHz, 16 and 24 bits:
#: libFLAC (soundfile, flac, sox) reaches 4,000x, ffmpeg's FLAC encoder (whose blocks grow with the
#: rate) 2,500x at 96 kHz stereo and 22,500x at 384 kHz with 8 channels, WavPack 6,100x, Vorbis
#: 8,400x, Opus 1,700x; AAC and ALAC, which pay a fixed price per channel and frame, 1,200x. Sound
#: stays far below: a lossless file, a quiet recorder's noise floor included, under about 30x, a lossy
#: one at its codec's lowest bitrate a few hundred times (6 kbit/s Opus, decoded at 48 kHz: 256x).
#: MPEG audio (layers I-III) has fixed-size frames whose lowest bitrates (8 kbit/s at 24 kHz) decode
#: to at most 192x; soundfile's length of an MP3 without a Xing/LAME header is estimated from its
#: first frame's bitrate, so it never passes that bound either.
CODEC_MAX_EXPANSION = {**dict.fromkeys(("flac", "wavpack", "vorbis", "opus"), 2 ** 15),
                       **dict.fromkeys(("aac", "alac"), 2 ** 13),
                       **dict.fromkeys(("mp1", "mp2", "mp3"), 256)}
#: soundfile containers that store samples uncompressed (when their subtype is in ``_PCM_BYTES``):
#: their length must fit the file byte for byte.
RAW_PCM_CONTAINERS = frozenset({"WAV", "WAVEX", "RF64", "W64", "AIFF", "AU", "RAW", "CAF", "NIST", "IRCAM", "PAF",
                                "SVX", "VOC", "MAT4", "MAT5", "PVF", "HTK", "SDS", "AVR", "SD2", "WVE", "MPC2K"})
#: The frame count soundfile reports for a file whose header does not give its length (libsndfile's
#: ``SF_COUNT_MAX``: a FLAC written to a pipe has 0 total samples in its STREAMINFO).
UNKNOWN_FRAMES = 2 ** 63 - 1
#: Bytes per sample of the uncompressed soundfile subtypes (their length must fit the file).
_PCM_BYTES = {"PCM_S8": 1, "PCM_U8": 1, "PCM_16": 2, "PCM_24": 3, "PCM_32": 4, "FLOAT": 4, "DOUBLE": 8,
              "ULAW": 1, "ALAW": 1}
#: soundfile's (container, subtype) of compressed formats -> the codec's name in :data:`CODEC_MAX_EXPANSION`.
_SOUNDFILE_CODECS = {"FLAC": "flac", "VORBIS": "vorbis", "OPUS": "opus", "MPEG_LAYER_I": "mp1",
                     "MPEG_LAYER_II": "mp2", "MPEG_LAYER_III": "mp3", "ALAC_16": "alac", "ALAC_20": "alac",
                     "ALAC_24": "alac", "ALAC_32": "alac"}
#: MATLAB classes a ``.mat`` input's samples may have.
_MAT_NUMERIC = {"double": 8, "single": 4, "int8": 1, "uint8": 1, "int16": 2, "uint16": 2, "int32": 4, "uint32": 4,
                "int64": 8, "uint64": 8}


def _mb(nbytes: float) -> str:
    return f"{nbytes / 2 ** 20:.1f} MB" if nbytes >= 2 ** 20 else f"{nbytes / 1024:.1f} KB"


def check_rate(rate_hz: float, *, name: str = "<memory>") -> int:
    """``rate_hz`` as an integer, or :class:`AudioError` when it is not a plausible audio rate.

    Raises
    ------
    AudioError
        Not finite, or outside :data:`MIN_RATE_HZ` .. :data:`MAX_RATE_HZ` (such a header would make
        resampling hang or blow a small file up to hours of audio).
    """
    try:
        value = float(rate_hz)
    except (TypeError, ValueError):
        raise AudioError(f"{name}: invalid sample rate {rate_hz!r}") from None
    if not np.isfinite(value) or not MIN_RATE_HZ <= value <= MAX_RATE_HZ:
        raise AudioError(f"{name}: sample rate {value:g} Hz is outside {MIN_RATE_HZ}..{MAX_RATE_HZ} Hz "
                         "(a broken or hostile header); not decoded")
    return int(round(value))


def decode_limit_bytes(file_bytes: int, *, max_expansion: int = MAX_EXPANSION) -> int:
    """Most float32 bytes a file of ``file_bytes`` may decode to: ``max_expansion`` times its size
    (see :data:`MAX_EXPANSION`, :func:`codec_max_expansion`), or :data:`FREE_DECODE_BYTES`."""
    return max(int(max_expansion) * int(file_bytes), FREE_DECODE_BYTES)


def codec_of(container: str | None, subtype: str | None) -> str | None:
    """The codec of a soundfile ``(format, subtype)`` as ffprobe names it (``flac``, ``vorbis``,
    ``opus``, ``mp3``, ``alac``...), or None for raw PCM and for what this module has no name for."""
    container, subtype = str(container or "").upper(), str(subtype or "").upper()
    if container == "FLAC":
        return "flac"  # whatever the subtype: soundfile gives a FLAC's decoded sample format (PCM_16, PCM_24)
    return _SOUNDFILE_CODECS.get(subtype)


def codec_max_expansion(codec: str | None) -> int:
    """Float32 bytes one file byte of ``codec`` may decode to: :data:`CODEC_MAX_EXPANSION`, else
    :data:`MAX_EXPANSION`."""
    return CODEC_MAX_EXPANSION.get(str(codec or "").lower(), MAX_EXPANSION)


def frames_known(frames: int) -> bool:
    """Whether a soundfile frame count is the header's length (not :data:`UNKNOWN_FRAMES`)."""
    return int(frames) != UNKNOWN_FRAMES


def check_header(path: str | os.PathLike, *, rate_hz: float, frames: int, channels: int,
                 subtype: str | None = None, container: str | None = None, file_bytes: int | None = None) -> int:
    """Refuse a header whose rate is implausible or whose length the file's size cannot hold.

    Parameters
    ----------
    path : path-like
        The file (for its size and the message).
    rate_hz, frames, channels : number
        What the header says. ``frames`` :data:`UNKNOWN_FRAMES` (a header without a length) is not
        checked: such a file is decoded by ffmpeg, which is stopped at the same bound.
    subtype : str, optional
        soundfile's subtype (``PCM_16``, ``FLOAT``, ``VORBIS``...).
    container : str, optional
        soundfile's format (``WAV``, ``FLAC``, ``OGG``, ``MP3``...). In a raw-PCM container
        (:data:`RAW_PCM_CONTAINERS`) an uncompressed subtype must fit the file byte for byte; any other
        container may decode to :func:`decode_limit_bytes` with its codec's
        :func:`codec_max_expansion`. Without it the subtype alone decides, as for a raw-PCM container
        (a caller that knows only a subtype knows an uncompressed file), with :data:`MAX_EXPANSION`.
    file_bytes : int, optional
        The file's size (default: read it).

    Returns
    -------
    int
        The rate.

    Raises
    ------
    AudioError
    """
    name = str(path)
    rate = check_rate(rate_hz, name=name)
    if channels is None or int(channels) < 1:
        raise AudioError(f"{name}: the header gives {channels} channels")
    if not frames_known(frames):
        return rate
    size = int(file_bytes if file_bytes is not None else os.stat(path).st_size)
    frames, channels = max(0, int(frames)), int(channels)
    seconds = frames / rate
    raw = container is None or str(container).upper() in RAW_PCM_CONTAINERS
    pcm = _PCM_BYTES.get(str(subtype or "").upper()) if raw else None
    if pcm is not None and frames * channels * pcm > size + 2 ** 16:
        raise AudioError(f"{name}: the header promises {seconds:.1f} s of audio but the file ({_mb(size)}) holds "
                         f"at most {size / (channels * pcm * rate):.1f} s; not decoded")
    codec = None if container is None else codec_of(container, subtype)
    expansion = codec_max_expansion(codec)
    decoded = frames * channels * 4
    if decoded > decode_limit_bytes(size, max_expansion=expansion):
        what = f"{_mb(size)} {codec.upper()} file" if codec else f"{_mb(size)} file"
        raise AudioError(f"{name}: the header promises {seconds:.1f} s of audio ({_mb(decoded)} decoded) from a "
                         f"{what}, more than {expansion}x its size; not decoded")
    return rate


def check_soundfile(f: Any, path: str | os.PathLike, *, file_bytes: int | None = None) -> int:
    """:func:`check_header` of an open ``soundfile.SoundFile``, and for a FLAC that its last promised
    sample is really there; the file is left at its start.

    A FLAC's STREAMINFO states its exact length, which libFLAC reaches by bisecting over frame
    headers (a few milliseconds; about half a second for a truncated 40 MB file), so a header that
    promises more than the file holds (truncated, or patched) is refused without decoding it, as a
    WAV's is by its size. Other compressed containers need no such check: an Ogg's length is its
    last page's, and an MP3's is estimated from its size.

    Parameters
    ----------
    f : soundfile.SoundFile
        Open for reading, at its start.
    path : path-like
        The file (for its size and the message).
    file_bytes : int, optional
        The file's size (default: read it).

    Returns
    -------
    int
        The rate.

    Raises
    ------
    AudioError
    """
    rate = check_header(path, rate_hz=f.samplerate, frames=f.frames, channels=f.channels, subtype=f.subtype,
                        container=f.format, file_bytes=file_bytes)
    if str(f.format).upper() == "FLAC" and frames_known(f.frames) and f.frames > 0:
        try:
            f.seek(f.frames - 1)
            there = f.read(1, dtype="float32", always_2d=True).shape[0] == 1
            f.seek(0)
        except Exception:  # noqa: BLE001 - libFLAC found no frame holding that sample
            there = False
        if not there:
            size = int(file_bytes if file_bytes is not None else os.stat(path).st_size)
            raise AudioError(f"{path}: the header promises {f.frames / rate:.1f} s of audio but the file "
                             f"({_mb(size)}) ends before that (truncated, or a broken or hostile header); not decoded")
    return rate


def wav_frame_counts(path: str | os.PathLike, *, content: bytes | None = None) -> tuple[int, int] | None:
    """``(frames the header promises, whole frames the file holds)`` of a RIFF/WAVE file, from its chunks.

    The ``data`` chunk's declared size is compared with the bytes after its header (libsndfile clamps
    its frame count to the file, so :func:`check_header` never sees a truncated WAV). A few small
    reads (the chunk headers), whatever the file's size.

    Parameters
    ----------
    path : path-like
        The file (read only when ``content`` is None).
    content : bytes, optional
        The file's bytes, already read.

    Returns
    -------
    tuple of int, or None
        None for anything but a RIFF/WAVE file with a ``fmt `` and a ``data`` chunk (RF64, W64, other
        formats: their decoders check them).
    """
    import struct

    def chunks(read, size: int):
        if read(0, 12)[:4] != b"RIFF" or read(0, 12)[8:12] != b"WAVE":
            return None
        offset, block_align = 12, 0
        while offset + 8 <= size:
            head = read(offset, 8)
            if len(head) < 8:
                return None
            cid, csize = head[:4], struct.unpack("<I", head[4:8])[0]
            if cid == b"fmt ":
                fmt = read(offset + 8, 16)
                if len(fmt) >= 14:
                    block_align = struct.unpack("<H", fmt[12:14])[0]
            elif cid == b"data":
                if block_align <= 0:
                    return None
                there = max(0, size - (offset + 8))
                return csize // block_align, min(csize, there) // block_align
            offset += 8 + csize + (csize & 1)
        return None

    if content is not None:
        return chunks(lambda at, n: content[at:at + n], len(content))
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size

            def read(at: int, n: int) -> bytes:
                fh.seek(at)
                return fh.read(n)

            return chunks(read, size)
    except OSError:
        return None


def check_truncated(path: str | os.PathLike, *, content: bytes | None = None,
                    allow: bool = False) -> dict[str, int] | None:
    """Refuse a WAV that holds fewer frames than its header promises (a copy cut short, a patched header).

    Parameters
    ----------
    path : path-like
        The file (for the message, and read when ``content`` is None).
    content : bytes, optional
        The file's bytes, already read.
    allow : bool
        ``--allow-truncated``: return what is missing instead of raising (the frames there are embedded).

    Returns
    -------
    dict or None
        ``{"frames_declared": int, "frames_present": int}`` for a truncated file that is allowed; None
        for a whole file (or one this cannot tell).

    Raises
    ------
    AudioError
        One line naming both frame counts, unless ``allow``.
    """
    counts = wav_frame_counts(path, content=content)
    if counts is None or counts[1] >= counts[0]:
        return None
    declared, present = counts
    if not allow:
        raise AudioError(f"{path}: truncated: the header promises {declared} frames but the file holds {present}; "
                         "not embedded (--allow-truncated embeds the frames that are there)")
    return {"frames_declared": int(declared), "frames_present": int(present)}


@dataclass(frozen=True)
class Audio:
    """Decoded mono audio.

    Attributes
    ----------
    samples : numpy.ndarray
        float32 [N], mono, in [-1, 1] for PCM sources.
    sample_rate_hz : int
        Rate of ``samples``.
    source_sample_rate_hz : int
        Rate of the file before resampling.
    source_channels : int
        Channel count of the file.
    channel : int or None
        The channel kept (0-based), or None when channels were averaged.
    path : str
        The file the audio came from ("<memory>" for in-memory input).
    """

    samples: np.ndarray
    sample_rate_hz: int
    source_sample_rate_hz: int
    source_channels: int
    channel: int | None
    path: str

    @property
    def duration_s(self) -> float:
        """Duration in seconds."""
        return self.samples.shape[0] / float(self.sample_rate_hz)


def plain_pcm16_wav(content: bytes) -> tuple[np.ndarray, int, int] | None:
    """``(int16 [N, C] samples, rate, frames)`` of a whole, plain 16-bit PCM WAV in memory, read by the
    standard library's :mod:`wave` (no GIL-bound decoder calls); None for anything else (another
    format or sample width, WAVE_FORMAT_EXTENSIBLE, a truncated data chunk), which soundfile reads."""
    if content[:4] != b"RIFF" or content[8:12] != b"WAVE":
        return None
    import wave

    try:
        with wave.open(io.BytesIO(content)) as w:
            channels, width, rate, frames = w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()
            if width != 2 or channels < 1:
                return None
            raw = w.readframes(frames)
    except (wave.Error, EOFError, ValueError):
        return None
    if len(raw) != frames * channels * 2 or frames == 0:
        return None
    return np.frombuffer(raw, dtype="<i2").reshape(frames, channels), int(rate), int(frames)


def _read_soundfile(f: Any, *, pcm16: bool) -> np.ndarray:
    """[N, C] samples of an open ``soundfile.SoundFile``: float32 in [-1, 1) (libsndfile scales
    integer PCM), or with ``pcm16`` a 16-bit PCM file's own int16 samples (see :func:`to_mono`)."""
    dtype = "int16" if pcm16 and str(f.subtype).upper() == "PCM_16" else "float32"
    return f.read(dtype=dtype, always_2d=True)


def ffmpeg_input(path: str | os.PathLike) -> str:
    """``path`` as ffmpeg/ffprobe must be given it: through the ``file:`` protocol, so that a name
    starting with ``-`` is never read as an option and one holding ``:`` never as another protocol."""
    return "file:" + os.fspath(path)


def _decode_ffmpeg(path: Path) -> tuple[np.ndarray, int]:
    exe = shutil.which("ffmpeg")
    if exe is None:
        raise AudioError(f"{path}: not a format soundfile can read, and ffmpeg is not installed")
    probe = shutil.which("ffprobe")
    channels, rate, codec = 0, 0, None
    if probe is not None:
        out = subprocess.run(
            [probe, "-v", "error", "-select_streams", "a:0", "-show_entries",
             "stream=codec_name,channels,sample_rate", "-of", "default=noprint_wrappers=1", ffmpeg_input(path)],
            capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL,
        )
        fields = dict(line.strip().partition("=")[::2] for line in out.stdout.splitlines() if "=" in line)
        if out.returncode == 0 and fields.get("sample_rate", "").isdigit() and fields.get("channels", "").isdigit():
            rate, channels, codec = int(fields["sample_rate"]), int(fields["channels"]), fields.get("codec_name")
    if rate <= 0 or channels <= 0:
        raise AudioError(f"{path}: not a readable audio file (neither soundfile nor ffmpeg found an audio stream)")
    check_rate(rate, name=str(path))
    expansion = codec_max_expansion(codec)
    size = path.stat().st_size
    limit = decode_limit_bytes(size, max_expansion=expansion)
    proc = subprocess.Popen(
        [exe, "-nostdin", "-v", "error", "-i", ffmpeg_input(path), "-map", "0:a:0", "-f", "f32le",
         "-acodec", "pcm_f32le", "pipe:1"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    import threading

    err: list[bytes] = []
    drain = threading.Thread(target=lambda: err.append(proc.stderr.read()), daemon=True)
    drain.start()
    chunks, total = [], 0
    while block := proc.stdout.read(2 ** 20):
        chunks.append(block)
        total += len(block)
        if total > limit:
            proc.kill()
            proc.wait()
            raise AudioError(f"{path}: decodes to more than {_mb(limit)} from a {_mb(size)} "
                             f"{(codec or 'compressed').upper()} file (more than {expansion}x its size); not decoded")
    proc.wait()
    drain.join()
    if proc.returncode != 0:
        reason = b"".join(err).decode("utf-8", "replace").strip().splitlines()
        raise AudioError(f"{path}: ffmpeg could not decode it ({reason[-1] if reason else 'unknown error'})")
    raw = b"".join(chunks)
    data = np.frombuffer(raw[:len(raw) - len(raw) % (4 * channels)], dtype="<f4").reshape(-1, channels)
    return data, rate


#: Variable names accepted for the samples of a ``.mat`` input (MATLAB callers), and for its rate.
MAT_AUDIO_NAMES = ("audio", "audioIn", "y", "x")
MAT_RATE_NAMES = ("fs", "Fs", "sample_rate")


def _decode_mat(path: Path) -> tuple[np.ndarray, int]:
    """A ``.mat`` input's samples and rate, checked from the variable headers before anything is decompressed:
    the samples a real numeric vector or matrix, the rate a numeric scalar, the size bounded
    (:func:`decode_limit_bytes`)."""
    from scipy.io import loadmat, whosmat

    def one_line(exc: Exception) -> str:
        return " ".join(str(exc).split())[:200]

    try:
        listing = {name: (tuple(shape), cls) for name, shape, cls in whosmat(str(path))}
    except Exception as exc:  # noqa: BLE001 - not MAT v4/v5/v7 (v7.3 is HDF5)
        hint = "; MATLAB v7.3 files are HDF5: save with -v7, or as WAV" if str(exc).startswith("Unknown mat") \
            else ""
        raise AudioError(f"{path}: not a readable .mat file ({one_line(exc)}){hint}") from None
    audio_name = next((k for k in MAT_AUDIO_NAMES if k in listing), None)
    rate_name = next((k for k in MAT_RATE_NAMES if k in listing), None)
    if audio_name is None or rate_name is None:
        raise AudioError(f"{path}: a .mat input needs variables {MAT_AUDIO_NAMES[0]!r} and {MAT_RATE_NAMES[0]!r}")
    shape, cls = listing[audio_name]
    if cls not in _MAT_NUMERIC:
        raise AudioError(f"{path}: {audio_name!r} must be a numeric array, not {cls}")
    if len(shape) > 2:
        raise AudioError(f"{path}: {audio_name!r} must be a vector or a [samples x channels] matrix, "
                         f"not {'x'.join(map(str, shape))}")
    if 0 in shape:
        raise AudioError(f"{path}: contains no audio samples ({audio_name!r} is {'x'.join(map(str, shape))})")
    rate_shape, rate_cls = listing[rate_name]
    if rate_cls not in _MAT_NUMERIC or int(np.prod(rate_shape)) != 1:
        raise AudioError(f"{path}: {rate_name!r} must be a numeric scalar, not a {'x'.join(map(str, rate_shape))} "
                         f"{rate_cls}")
    size = path.stat().st_size
    n = int(np.prod(shape, dtype=np.int64))
    if n * 4 > decode_limit_bytes(size):
        raise AudioError(f"{path}: {audio_name!r} holds {n} samples ({_mb(n * 4)} as float32) in a {_mb(size)} "
                         f"file, more than {MAX_EXPANSION}x its size; not decoded")
    try:
        rate_value = loadmat(str(path), variable_names=[rate_name])[rate_name]
    except Exception as exc:  # noqa: BLE001
        raise AudioError(f"{path}: not a readable .mat file ({one_line(exc)})") from None
    rate_value = np.asarray(rate_value).ravel()
    if np.iscomplexobj(rate_value):
        raise AudioError(f"{path}: {rate_name!r} must be real, not complex")
    rate = check_rate(rate_value[0], name=str(path))
    try:
        data = loadmat(str(path), variable_names=[audio_name])[audio_name]
    except Exception as exc:  # noqa: BLE001
        raise AudioError(f"{path}: not a readable .mat file ({one_line(exc)})") from None
    data = np.asarray(data)
    if np.iscomplexobj(data) or not (np.issubdtype(data.dtype, np.integer) or np.issubdtype(data.dtype, np.floating)):
        raise AudioError(f"{path}: {audio_name!r} must be real numbers, not {data.dtype}")
    return data, rate


def check_file(path: str | os.PathLike) -> Path:
    """Raise :class:`AudioError` for a path that is missing, a directory, not a regular file, empty or unreadable."""
    import stat

    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise AudioError(f"{p}: file not found") from None
    except OSError as exc:
        raise AudioError(f"{p}: cannot be read ({(exc.strerror or str(exc)).lower()})") from None
    except ValueError as exc:  # an embedded NUL
        raise AudioError(f"{p}: not a valid file name ({exc})") from None
    if stat.S_ISDIR(st.st_mode):
        raise AudioError(f"{p}: is a directory, not an audio file")
    if not stat.S_ISREG(st.st_mode):
        raise AudioError(f"{p}: not a regular file (a pipe, socket or device); not read")
    if st.st_size == 0:
        raise AudioError(f"{p}: file is empty (0 bytes)")
    try:
        with open(p, "rb"):
            pass
    except OSError as exc:
        raise AudioError(f"{p}: cannot be read ({(exc.strerror or str(exc)).lower()})") from None
    return p


def decode(path: str | os.PathLike, *, pcm16: bool = False, content: bytes | None = None,
           wav: tuple[np.ndarray, int, int] | None = None) -> tuple[np.ndarray, int]:
    """Decode a file to [N, C] samples and its sample rate: soundfile, then ffmpeg (``.mat``: scipy).

    Parameters
    ----------
    path : path-like
        The file.
    pcm16 : bool
        Give a 16-bit PCM file's samples as int16 (half the memory, and :func:`prepare` mixes
        them exactly, to the same float32 values); otherwise float32 in [-1, 1).
    content : bytes, optional
        The file's bytes, already read (e.g. to hash exactly what is decoded): decoded from
        memory by soundfile; ffmpeg, if needed, still reads ``path``.
    wav : tuple, optional
        :func:`plain_pcm16_wav` of ``content``, when the caller has parsed it already (not parsed again).

    Raises
    ------
    AudioError
        Missing, empty, or undecodable file, or a header the file cannot hold (:func:`check_soundfile`;
        ffmpeg's output is bounded the same way as it decodes).
    """
    p = check_file(path) if content is None else Path(path)
    if p.suffix.lower() == ".mat":
        return _decode_mat(p)
    if pcm16 and content is not None and (plain := wav or plain_pcm16_wav(content)) is not None:
        data, rate, frames = plain
        return data, check_header(p, rate_hz=rate, frames=frames, channels=data.shape[1], subtype="PCM_16",
                                  container="WAV", file_bytes=len(content))
    import soundfile as sf

    try:
        f = sf.SoundFile(str(p) if content is None else io.BytesIO(content))
    except Exception:  # noqa: BLE001 - any libsndfile failure means "try ffmpeg"
        return _decode_ffmpeg(p)
    with f:
        rate = check_soundfile(f, p, file_bytes=None if content is None else len(content))
        try:
            if frames_known(f.frames):  # else no length to read to (libsndfile cannot read such a FLAC): ffmpeg
                return _read_soundfile(f, pcm16=pcm16), int(rate)
        except AudioError:
            raise
        except Exception:  # noqa: BLE001 - any libsndfile failure means "try ffmpeg"
            pass
    return _decode_ffmpeg(p)


def to_mono(data: np.ndarray, *, channel: int | None = None, name: str = "<memory>") -> np.ndarray:
    """Reduce [N, C] (or [N]) audio to mono [N].

    Parameters
    ----------
    data : numpy.ndarray
        [N] or [N, C] samples.
    channel : int, optional
        0-based channel to keep; None averages all channels.
    name : str
        Used in error messages.

    Returns
    -------
    numpy.ndarray
        float32 [N], C-contiguous.

    Notes
    -----
    float32 (and float64) input is averaged in its own precision into one [N] accumulator,
    one channel at a time: no float64 temporary for float32 audio and no reduction over the
    short channel axis (which costs about ten times more). The sums run from zero in channel
    order and are then divided by C, which is the order ``data.mean(axis=1)`` uses for these
    layouts, so the result is bit-identical to it (negative zeros included); a C-ordered
    array of 8 or more channels, where NumPy sums pairwise, goes through ``mean`` itself.
    Other dtypes are averaged by ``mean`` and rounded to float32.
    """
    if data.ndim == 1:
        data = data[:, None]
    n_channels = data.shape[1]
    if channel is not None:
        if not 0 <= channel < n_channels:
            raise AudioError(f"{name}: --channel {channel} requested but the file has {n_channels} channel(s) "
                             "(0-based)")
        return _pcm16_mono(data[:, channel:channel + 1]) if data.dtype == np.int16 else \
            np.ascontiguousarray(data[:, channel], dtype=np.float32)
    if data.dtype == np.int16:
        return _pcm16_mono(data)
    if n_channels == 1:
        return np.ascontiguousarray(data[:, 0], dtype=np.float32)
    if data.dtype not in (np.float32, np.float64) or (n_channels >= 8 and not data.flags.f_contiguous):
        return np.ascontiguousarray(data.mean(axis=1), dtype=np.float32)
    mono = np.add(data[:, 0], data.dtype.type(0.0))  # from +0, as NumPy's sum: -0 + -0 averages to +0
    for c in range(1, n_channels):
        mono += data[:, c]
    mono /= data.dtype.type(n_channels)
    return mono if mono.dtype == np.float32 else mono.astype(np.float32)


def _pcm16_mono(data: np.ndarray) -> np.ndarray:
    """Mono float32 [N] of int16 PCM [N, C]: the channels summed exactly in int32, then scaled by
    2**-15 (exact) and divided by C, which gives the very float32 values of averaging libsndfile's
    float32 reading of the same file (its samples are x / 32768, and their float32 sums are exact)."""
    if data.shape[1] == 2 and data.flags.c_contiguous and sys.byteorder == "little":
        pairs = data.view(np.int32).ravel()  # one int32 per frame: channel 0 in the low half
        acc = (pairs << 16) >> 16  # channel 0, sign-extended
        acc += pairs >> 16  # + channel 1 (half the time of two strided int16 passes)
    else:
        acc = data[:, 0].astype(np.int32)
        for c in range(1, data.shape[1]):
            acc += data[:, c]
    mono = acc.astype(np.float32)
    mono *= np.float32(2.0 ** -15)
    if data.shape[1] > 1:
        mono /= np.float32(data.shape[1])
    return mono


#: Resamplers: ``soxr-hq`` (this toolkit's default) and ``kaiser-fast`` (BirdNET-Analyzer's, via resampy).
RESAMPLERS = ("soxr-hq", "kaiser-fast")


def resample(samples: np.ndarray, *, from_hz: int, to_hz: int, method: str = "soxr-hq") -> np.ndarray:
    """Resample mono float32 [N] with ``soxr-hq`` or ``kaiser-fast``; identity when the rates match.

    ``kaiser-fast`` equals ``librosa.resample(y, orig_sr=from_hz, target_sr=to_hz, res_type="kaiser_fast")``
    (what BirdNET-Analyzer's ``librosa.load(..., res_type="kaiser_fast")`` does: resampy's filter, the
    length fixed to ``ceil(N * to / from)``).

    Raises
    ------
    ImportError
        ``kaiser-fast`` without resampy installed (``pip install resampy``).
    ValueError
        An unknown ``method``.
    """
    x = np.ascontiguousarray(samples, dtype=np.float32)
    if int(from_hz) == int(to_hz):
        return x
    if method == "soxr-hq":
        import soxr

        return np.ascontiguousarray(soxr.resample(x, int(from_hz), int(to_hz), quality="HQ"), dtype=np.float32)
    if method != "kaiser-fast":
        raise ValueError(f"resampler {method!r}: choose from {', '.join(RESAMPLERS)}")
    try:
        import resampy
    except ImportError:
        raise ImportError("--resampler kaiser-fast needs resampy (pip install resampy): it is the kaiser_fast "
                          "filter librosa and BirdNET-Analyzer use") from None
    y = np.asarray(resampy.resample(x, int(from_hz), int(to_hz), filter="kaiser_fast", axis=-1), dtype=np.float32)
    size = int(np.ceil(x.shape[-1] * (float(to_hz) / from_hz)))  # librosa's own arithmetic (its off-by-one too)
    if y.shape[-1] > size:
        y = y[..., :size]
    elif y.shape[-1] < size:
        y = np.pad(y, (0, size - y.shape[-1]))
    return np.ascontiguousarray(y, dtype=np.float32)


def prepare(
    data: np.ndarray,
    source_rate_hz: int,
    *,
    target_rate_hz: int,
    channel: int | None = None,
    min_samples: int = 1,
    name: str = "<memory>",
    resampler: str = "soxr-hq",
) -> Audio:
    """Mono, resample and check already-decoded audio.

    Parameters
    ----------
    data : numpy.ndarray
        [N] or [N, C] samples; integer arrays are scaled to [-1, 1].
    source_rate_hz : int
        Rate of ``data``.
    target_rate_hz : int
        The model's rate.
    channel : int, optional
        Keep this 0-based channel instead of averaging.
    min_samples : int
        Shortest acceptable length at ``target_rate_hz``.
    name : str
        File name for error messages.
    resampler : {"soxr-hq", "kaiser-fast"}
        See :func:`resample`.
    """
    data = np.asarray(data)
    exact = data.dtype == np.int16  # 16-bit PCM: mixed exactly by to_mono, and always finite
    if np.issubdtype(data.dtype, np.integer) and not exact:
        info = np.iinfo(data.dtype)
        half_range = (float(info.max) + 1.0) / 2.0 if info.min == 0 else -float(info.min)
        zero = half_range if info.min == 0 else 0.0  # unsigned PCM (8-bit WAV) is centred on 128
        data = (data.astype(np.float64) - zero) / half_range
    if data.ndim not in (1, 2):
        raise AudioError(f"{name}: audio must be [N] or [N, channels], got shape {data.shape}")
    if data.ndim == 2 and data.shape[0] < data.shape[1] and data.shape[0] <= 8:
        data = data.T  # accept [channels, N] from MATLAB-style callers
    n_channels = 1 if data.ndim == 1 else data.shape[1]
    if data.shape[0] == 0:
        raise AudioError(f"{name}: contains no audio samples")
    source_rate_hz = check_rate(source_rate_hz, name=name)
    mono = to_mono(data, channel=channel, name=name)
    if not exact and not np.all(np.isfinite(mono)):
        raise AudioError(f"{name}: contains NaN or Inf samples")
    samples = resample(mono, from_hz=source_rate_hz, to_hz=target_rate_hz, method=resampler)
    if samples.shape[0] < min_samples:
        raise AudioError(
            f"{name}: too short ({samples.shape[0] / target_rate_hz * 1000:.1f} ms); "
            f"the model needs at least {min_samples / target_rate_hz * 1000:.1f} ms"
        )
    return Audio(samples, int(target_rate_hz), int(source_rate_hz), n_channels, channel, name)


def load(
    path: str | os.PathLike,
    *,
    sample_rate_hz: int,
    channel: int | None = None,
    min_samples: int = 1,
    resampler: str = "soxr-hq",
    content: bytes | None = None,
    wav: tuple[np.ndarray, int, int] | None = None,
    allow_truncated: bool = False,
) -> Audio:
    """Load a file as mono float32 at ``sample_rate_hz``.

    Parameters
    ----------
    path : path-like
        Any format soundfile reads (wav, flac, ogg, mp3), anything else via ffmpeg.
    sample_rate_hz : int
        Target rate (the model's).
    channel : int, optional
        0-based channel to keep; None averages channels.
    min_samples : int
        Shortest acceptable length at ``sample_rate_hz``.
    resampler : {"soxr-hq", "kaiser-fast"}
        See :func:`resample`.
    content, wav : optional
        The file's bytes, already read, and their :func:`plain_pcm16_wav` (see :func:`decode`).
    allow_truncated : bool
        Embed the frames a truncated WAV holds (:func:`check_truncated`) instead of refusing it.

    Returns
    -------
    Audio
        ``samples`` float32 [N].

    Raises
    ------
    AudioError
        One line naming the file: missing, empty, corrupt, truncated, NaN/Inf, too short.
    """
    check_truncated(path if content is not None else check_file(path), content=content, allow=allow_truncated)
    data, rate = decode(path, pcm16=True, content=content, wav=wav)
    return prepare(data, rate, target_rate_hz=sample_rate_hz, channel=channel,
                   min_samples=min_samples, name=str(path), resampler=resampler)


def synthetic_tone(*, duration_s: float, sample_rate_hz: int, frequency_hz: float = 440.0,
                   amplitude: float = 0.5) -> np.ndarray:
    """A sine tone, float32 [round(duration_s * sample_rate_hz)], for smoke runs without input."""
    n = int(round(duration_s * sample_rate_hz))
    t = np.arange(n, dtype=np.float64) / sample_rate_hz
    return (amplitude * np.sin(2.0 * np.pi * frequency_hz * t)).astype(np.float32)

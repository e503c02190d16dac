"""Long recordings in every container we take (issue 21, item 1): the same 10-minute, 44.1 kHz
recording as FLAC, Ogg Vorbis, Opus, MP3, AAC, WavPack, ALAC, WAV, RF64 and W64 decodes, streams and
embeds; the bounded-work guard still refuses hostile headers, fast.

Every file is made here, once per module (soundfile writes what it can, ffmpeg the rest; an
ffmpeg-made file skips its tests where ffmpeg or its encoder is missing).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import struct
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audio_embeddings import audio
from audio_embeddings.corpus.loader import LoadTask, load_item
from helpers import REPO, require_birdnet_model, run_script

RATE_HZ = 44100
SECONDS = 600.0
N_FRAMES = int(SECONDS * RATE_HZ)
FFMPEG = shutil.which("ffmpeg")


def _ffmpeg_encoders() -> set[str]:
    if FFMPEG is None:
        return set()
    out = subprocess.run([FFMPEG, "-hide_banner", "-encoders"], capture_output=True, text=True, check=False).stdout
    return {line.split()[1] for line in out.splitlines() if len(line.split()) > 1 and line.startswith(" A")}


ENCODERS = _ffmpeg_encoders()


def need_ffmpeg(what: str) -> None:
    if FFMPEG is None:
        pytest.skip(f"ffmpeg not installed: {what} is made (or decoded for reference) by ffmpeg")


# -- the recording ---------------------------------------------------------------------------------------

def _recording(seconds: float = SECONDS, rate_hz: int = RATE_HZ) -> np.ndarray:
    """float32 [N, 2] in [-0.8, 0.8]: the demo speech clips with pauses, tiled, over a coloured noise
    floor, with bird-like chirps and a gated 440 Hz beacon, and 30 s of digital silence (a paused
    recorder) in the middle; the right channel hears the speech 5 ms later and has its own noise."""
    import soxr
    from scipy.signal import lfilter

    n = int(seconds * rate_hz)
    rng = np.random.default_rng(21)
    pieces = []
    for clip in sorted((REPO / "data").glob("speech_*.wav")):
        x, rate = sf.read(clip, dtype="float32")
        pieces += [soxr.resample(x, rate, rate_hz), np.zeros(int(rng.uniform(0.5, 2.0) * rate_hz), np.float32)]
    speech = np.resize(np.concatenate(pieces), n)
    length = int(0.15 * rate_hz)
    sweep = (np.sin(2 * np.pi * np.cumsum(np.linspace(3000, 6000, length)) / rate_hz) * np.hanning(length))
    one_second = np.arange(rate_hz) / rate_hz  # 440 whole cycles: tiles seamlessly
    beacon = np.resize((0.05 * np.sin(2 * np.pi * 440 * one_second)).astype(np.float32), n)
    beacon *= np.resize(np.repeat(np.array([0, 1, 1, 1, 0] * 4, np.float32), rate_hz), n)  # on 3 s in 5
    x = np.empty((n, 2), np.float32)
    for c, delay in enumerate((0, int(0.005 * rate_hz))):
        floor = lfilter(np.float32([0.004]), np.float32([1.0, -0.95]), rng.standard_normal(n, dtype=np.float32))
        x[:, c] = floor
        x[delay:, c] += 0.6 * speech[:n - delay]
        x[:, c] += beacon
        for start in np.arange(1.0 + 0.3 * c, seconds - 1.0, 3.7):  # a chirp every 3.7 s
            i = int(start * rate_hz)
            x[i:i + length, c] += (0.25 * sweep).astype(np.float32)
    x *= np.float32(0.8) / np.abs(x).max()
    x[n // 2:n // 2 + int(30 * rate_hz)] = 0.0
    return x


def _quantise(x: np.ndarray, depth: str) -> np.ndarray:
    """``x`` as the samples a file of ``depth`` holds: int16, int32 with 24 significant bits, int32, float32."""
    if depth == "f32":
        return x
    bits = {"i16": 16, "i24": 24, "i32": 32}[depth]
    q = np.rint(x.astype(np.float64 if bits == 32 else np.float32) * (2.0 ** (bits - 1)))  # a power-of-two scale: exact
    np.clip(q, -2 ** (bits - 1), 2 ** (bits - 1) - 1, out=q)
    if bits == 16:
        return q.astype(np.int16)
    q = q.astype(np.int32)
    q <<= 32 - bits
    return q


def _as_float(q: np.ndarray) -> np.ndarray:
    """What a decoder gives for ``q``: integers scaled by their type's full scale (libsndfile's and
    ffmpeg's float32: the integer rounded to float32, then an exact power-of-two scale)."""
    if q.dtype == np.float32:
        return q
    out = q.astype(np.float32)
    out *= np.float32(1.0 / -float(np.iinfo(q.dtype).min))
    return out


@pytest.fixture(scope="module")
def recording() -> dict[int, np.ndarray]:
    """{channels: float32 [N, channels]}: the stereo recording, and (made when first asked for) a
    4-channel one: the stereo pair and the pair swapped at half level."""

    class Recordings(dict):
        def __missing__(self, channels: int) -> np.ndarray:
            assert channels == 4
            x = self[2]
            self[4] = np.concatenate([x, 0.5 * x[:, ::-1]], axis=1)
            return self[4]

    return Recordings({2: _recording()})


@dataclass(frozen=True)
class Format:
    """One file of the recording: written by soundfile (``sf_format``) or encoded by ffmpeg from the
    soundfile-written ``source`` (a name in :data:`FORMATS`) with the first available of ``encoders``."""

    file: str
    depth: str  # the samples it holds: "i16", "i24", "i32", "f32"; lossy ones: their source's
    lossless: bool = True
    channels: int = 2
    sf_format: str | None = None
    sf_subtype: str | None = None
    source: str | None = None
    encoders: tuple[tuple[str, ...], ...] = ()


def _enc(*alternatives: tuple[str, ...]) -> tuple[tuple[str, ...], ...]:
    return alternatives


FORMATS = {
    "wav16": Format("rec_wav16.wav", "i16", sf_format="WAV", sf_subtype="PCM_16"),
    "wav24": Format("rec_wav24.wav", "i24", sf_format="WAV", sf_subtype="PCM_24"),
    "wav32": Format("rec_wav32.wav", "i32", sf_format="WAV", sf_subtype="PCM_32"),
    "wavfloat": Format("rec_wavfloat.wav", "f32", sf_format="WAV", sf_subtype="FLOAT"),
    "rf64": Format("rec_rf64.wav", "i24", sf_format="RF64", sf_subtype="PCM_24"),
    "w64": Format("rec_w64.w64", "f32", sf_format="W64", sf_subtype="FLOAT"),
    "flac16_libflac": Format("rec_flac16_libflac.flac", "i16", sf_format="FLAC", sf_subtype="PCM_16"),
    "flac24_libflac": Format("rec_flac24_libflac.flac", "i24", sf_format="FLAC", sf_subtype="PCM_24"),
    "flac4": Format("rec_flac4.flac", "i16", channels=4, sf_format="FLAC", sf_subtype="PCM_16"),
    "wav4": Format("rec_wav4.wav", "i24", channels=4, sf_format="WAV", sf_subtype="PCM_24"),
    "flac16": Format("rec_flac16.flac", "i16", source="wav16", encoders=_enc(("-c:a", "flac"))),
    "flac24": Format("rec_flac24.flac", "i24", source="wav24", encoders=_enc(("-c:a", "flac"))),
    "wavpack": Format("rec_wavpack.wv", "i16", source="wav16", encoders=_enc(("-c:a", "wavpack"))),
    "alac": Format("rec_alac.m4a", "i24", source="wav24", encoders=_enc(("-c:a", "alac"))),
    "vorbis": Format("rec_vorbis.ogg", "f32", lossless=False, source="wavfloat",
                     encoders=_enc(("-c:a", "libvorbis", "-q:a", "4"), ("-c:a", "vorbis", "-strict", "-2"))),
    "opus": Format("rec_opus.opus", "f32", lossless=False, source="wavfloat",
                   encoders=_enc(("-c:a", "libopus", "-b:a", "96k"), ("-c:a", "opus", "-strict", "-2"))),
    "mp3": Format("rec_mp3.mp3", "f32", lossless=False, source="wavfloat",
                  encoders=_enc(("-c:a", "libmp3lame", "-b:a", "128k"), ("-c:a", "libshine", "-b:a", "128k"))),
    "aac": Format("rec_aac.m4a", "f32", lossless=False, source="wavfloat",
                  encoders=_enc(("-c:a", "aac", "-b:a", "128k"))),
}
LOSSLESS = [k for k, f in FORMATS.items() if f.lossless]
LOSSY = [k for k, f in FORMATS.items() if not f.lossless]
#: Files whose 10-minute decode or stream (with, for the lossy ones, their ffmpeg encoding) takes more than
#: about 3 s on 2 cores: marked slow, so ``./test.sh -m "not slow"`` leaves them out.
SLOW_DECODES = {"flac16_libflac", "flac24_libflac", "flac4", "wav4", "wavpack", "alac", "opus", "vorbis", "mp3"}


def _marked(names: list[str]) -> list:
    """``names`` as parameters, those in :data:`SLOW_DECODES` marked slow."""
    return [pytest.param(n, marks=pytest.mark.slow) if n in SLOW_DECODES else n for n in names]
#: Most |soundfile's decode - ffmpeg's decode| of the lossy files, and most RMS of it (measured on this
#: recording: Vorbis 2.1e-7 and 1.1e-8 RMS, MP3 1.9e-6 and 5.5e-8 RMS, libvorbis and mpg123 against
#: ffmpeg's own decoders; Opus 7.8e-3 to 8.7e-3 and 5.4e-5 RMS (correlation 0.9999996), libopus against
#: ffmpeg's native Opus decoder, which is not bit-exact to it; AAC goes through ffmpeg on both sides).
LOSSY_TOLERANCE = {"vorbis": (1e-5, 1e-6), "mp3": (1e-5, 1e-6), "opus": (2e-2, 2e-4), "aac": (0.0, 0.0)}


@pytest.fixture(scope="module")
def long_files(tmp_path_factory, recording):
    """``make(name) -> Path`` of the recording in :data:`FORMATS` ``name`` (each made once), and its
    ``samples(name)``: what a lossless decoder must give, float32 [N, C]."""
    folder = tmp_path_factory.mktemp("long-formats")
    made: dict[str, Path] = {}
    quantised: dict[tuple[int, str], np.ndarray] = {}

    def held(name: str) -> np.ndarray:
        spec = FORMATS[name]
        key = (spec.channels, spec.depth)
        if key not in quantised:
            quantised[key] = _quantise(recording[spec.channels], spec.depth)
        return quantised[key]

    def samples(name: str) -> np.ndarray:
        return _as_float(held(name))

    def make(name: str) -> Path:
        if name in made:
            return made[name]
        spec = FORMATS[name]
        path = folder / spec.file
        if spec.sf_format is not None:
            sf.write(path, held(name), RATE_HZ, subtype=spec.sf_subtype, format=spec.sf_format)
        else:
            need_ffmpeg(spec.file)
            args = next((e for e in spec.encoders if e[1] in ENCODERS), None)
            if args is None:
                pytest.skip(f"this ffmpeg has no {' or '.join(e[1] for e in spec.encoders)} encoder")
            subprocess.run([FFMPEG, "-nostdin", "-v", "error", "-y", "-i", str(make(spec.source)), *args, str(path)],
                           check=True)
        made[name] = path
        return path

    make.samples = samples
    return make


def ffmpeg_decode(path: Path, channels: int) -> np.ndarray:
    """ffmpeg's own decode of ``path``: float32 [N, channels]."""
    raw = subprocess.run([FFMPEG, "-nostdin", "-v", "error", "-i", str(path), "-f", "f32le", "-ac", str(channels),
                          "-"], capture_output=True, check=True).stdout
    return np.frombuffer(raw, dtype="<f4").reshape(-1, channels)


# -- decoding ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", _marked(LOSSLESS))
def test_a_long_lossless_file_decodes_to_its_samples(long_files, name):
    spec = FORMATS[name]
    path = long_files(name)
    data, rate = audio.decode(path)
    assert rate == RATE_HZ and data.dtype == np.float32
    expected = long_files.samples(name)
    assert data.shape == expected.shape == (N_FRAMES, spec.channels)
    np.testing.assert_array_equal(data, expected)  # integers scaled exactly, floats as written


@pytest.mark.slow
@pytest.mark.parametrize("name", LOSSY)
def test_a_long_lossy_file_decodes_as_ffmpeg_decodes_it(long_files, name, recording):
    path = long_files(name)
    data, rate = audio.decode(path)
    theirs = ffmpeg_decode(path, 2)
    # the same length: both trim the encoder delay and padding that MP3's LAME header and Opus's
    # pre-skip give (AAC's 160 extra samples are ffmpeg's decode on both sides)
    assert data.shape == theirs.shape and rate == (48000 if name == "opus" else RATE_HZ)
    max_abs, rms = LOSSY_TOLERANCE[name]
    diff = data - theirs
    assert np.abs(diff).max() <= max_abs
    assert np.sqrt(np.mean(np.square(diff, dtype=np.float64))) <= rms
    source = recording[2]
    if rate != RATE_HZ:
        import soxr

        source = soxr.resample(source, RATE_HZ, rate)
    n = min(len(source), len(data))
    for c in range(2):  # aligned with the source: no encoder delay left at the start
        assert np.corrcoef(source[:n, c], data[:n, c])[0, 1] > 0.9


@pytest.mark.slow
def test_a_flac_without_a_length_is_decoded_by_ffmpeg(long_files, tmp_path):
    """A FLAC written to a pipe has no length in its STREAMINFO (soundfile: SF_COUNT_MAX frames), and
    libsndfile cannot read it: ffmpeg decodes it, bounded by what it really holds."""
    need_ffmpeg("a FLAC written to a pipe")
    path = tmp_path / "piped.flac"
    with open(path, "wb") as out:
        subprocess.run([FFMPEG, "-nostdin", "-v", "error", "-i", str(long_files("wav16")), "-c:a", "flac", "-f", "flac",
                        "pipe:1"], stdout=out, check=True)
    assert sf.info(str(path)).frames == audio.UNKNOWN_FRAMES
    data, rate = audio.decode(path)
    np.testing.assert_array_equal(data, long_files.samples("wav16"))
    streamed = load_item(LoadTask("piped", str(path), 16000, stream_above_samples=16000, scratch_dir=str(tmp_path)))
    assert streamed.error is None and streamed.n_samples == int(SECONDS * 16000)


@pytest.mark.parametrize("name", _marked(["flac16", "flac24_libflac", "flac4", "vorbis", "opus", "mp3"]))
def test_a_long_compressed_file_streams_as_it_loads_whole(long_files, name, tmp_path):
    path = long_files(name)
    whole = load_item(LoadTask(name, str(path), 16000))
    streamed = load_item(LoadTask(name, str(path), 16000, stream_above_samples=16000 * 60, scratch_dir=str(tmp_path)))
    assert whole.error is None and streamed.error is None, (whole.error, streamed.error)
    assert streamed.samples is None and streamed.audio_info["streamed"]
    raw = np.fromfile(streamed.raw_path, dtype="<f4")
    assert raw.shape == whole.samples.shape == (streamed.n_samples,) == (int(SECONDS * 16000),)
    np.testing.assert_allclose(raw, whole.samples, atol=2e-4)  # soxr stream vs one shot: filter edges only


# -- the guard -----------------------------------------------------------------------------------------

def test_the_size_bound_follows_the_container_not_the_subtype():
    # the issue's file: 7.2 s of 22.05 kHz mono in a 166.1 KB FLAC, which soundfile calls PCM_16
    assert audio.check_header("x.flac", rate_hz=22050, frames=158912, channels=1, subtype="PCM_16",
                              container="FLAC", file_bytes=170113) == 22050
    with pytest.raises(audio.AudioError, match=r"x.wav: the header promises 7.2 s of audio but the file "
                                               r"\(166.1 KB\) holds at most 3.9 s; not decoded"):
        audio.check_header("x.wav", rate_hz=22050, frames=158912, channels=1, subtype="PCM_16", container="WAV",
                           file_bytes=170113)
    for container in ("RF64", "W64", "WAVEX", "AIFF", "CAF", "RAW"):  # raw PCM: byte for byte
        with pytest.raises(audio.AudioError, match="holds at most"):
            audio.check_header("x", rate_hz=44100, frames=N_FRAMES, channels=2, subtype="PCM_24",
                               container=container, file_bytes=100_000_000)
    # a compressed container: up to its codec's expansion (past FREE_DECODE_BYTES: 2 MB x 256 = 512 MB)
    size = 2_000_000
    for container, subtype, codec in (("FLAC", "PCM_24", "flac"), ("OGG", "VORBIS", "vorbis"),
                                      ("OGG", "OPUS", "opus"), ("MP3", "MPEG_LAYER_III", "mp3")):
        bound = audio.CODEC_MAX_EXPANSION[codec]
        assert audio.codec_of(container, subtype) == codec
        frames = bound * size // 4  # mono float32
        assert audio.check_header("x", rate_hz=48000, frames=frames, channels=1, subtype=subtype,
                                  container=container, file_bytes=size) == 48000
        with pytest.raises(audio.AudioError, match=rf"from a 1.9 MB {codec.upper()} file, more than {bound}x "
                                                   r"its size; not decoded"):
            audio.check_header("x", rate_hz=48000, frames=frames + 1, channels=1, subtype=subtype,
                               container=container, file_bytes=size)
    # a header without a length is not a claim: ffmpeg decodes it, bounded as it goes
    assert audio.check_header("x", rate_hz=44100, frames=audio.UNKNOWN_FRAMES, channels=2, subtype="PCM_16",
                              container="FLAC", file_bytes=1000) == 44100


def _with_total_samples(flac: bytes, total: int) -> bytes:
    """``flac`` with its STREAMINFO's 36-bit total-samples field set to ``total``."""
    assert flac[:4] == b"fLaC" and flac[4] & 0x7F == 0  # STREAMINFO is the first metadata block
    word = struct.unpack(">Q", flac[18:26])[0]  # rate(20) channels(3) bits(5) total(36)
    word = (word & ~((1 << 36) - 1)) | total
    return flac[:18] + struct.pack(">Q", word) + flac[26:]


@pytest.fixture()
def tiny_flac(tmp_path) -> Path:
    """About 20 KB: half a second of a 44.1 kHz tone."""
    t = np.arange(RATE_HZ // 2) / RATE_HZ
    x = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.001 * np.random.default_rng(0).standard_normal(t.size)
    path = tmp_path / "tiny.flac"
    sf.write(path, x, RATE_HZ, subtype="PCM_16")
    assert path.stat().st_size < 40_000
    return path


def _refused_fast(path: Path, match: str) -> float:
    """Seconds ``audio.load`` and the corpus loader (whole and streaming) took to refuse ``path`` with
    one line naming it."""
    start = time.perf_counter()
    with pytest.raises(audio.AudioError, match=match) as caught:
        audio.load(path, sample_rate_hz=16000)
    message = str(caught.value)
    for stream in (None, 16000):
        got = load_item(LoadTask(path.name, str(path), 16000, stream_above_samples=stream,
                                 scratch_dir=str(path.parent)))
        assert got.error == message and got.raw_path is None
    assert message.startswith(f"{path}: ") and "\n" not in message
    return time.perf_counter() - start


@pytest.mark.parametrize("total", [10 * 3600 * RATE_HZ, 2 ** 36 - 1], ids=["10h", "36-bit-most-433h"])
def test_a_tiny_flac_claiming_hours_is_refused_fast(tiny_flac, total):
    path = tiny_flac.with_name(f"claims_{total}.flac")
    path.write_bytes(_with_total_samples(tiny_flac.read_bytes(), total))
    assert _refused_fast(path, rf"the header promises {total / RATE_HZ:.1f} s of audio \(.* decoded\) from a "
                               r"2\d.\d KB FLAC file, more than 32768x its size; not decoded") < 1.0


def test_a_tiny_flac_claiming_minutes_is_refused_for_ending_early(tiny_flac):
    """Within the expansion bound, the claim is checked where it is cheap: libFLAC looks for the last
    sample promised, and there is none."""
    path = tiny_flac.with_name("claims_10min.flac")
    path.write_bytes(_with_total_samples(tiny_flac.read_bytes(), N_FRAMES))
    assert _refused_fast(path, r"the header promises 600.0 s of audio but the file \(.* KB\) ends before that "
                               r"\(truncated, or a broken or hostile header\); not decoded") < 1.0


def test_a_truncated_long_flac_is_refused(long_files, tmp_path):
    path = tmp_path / "cut.flac"
    path.write_bytes(long_files("flac16_libflac").read_bytes()[:20_000_000])
    assert _refused_fast(path, r"the header promises 600.0 s of audio but the file \(19.1 MB\) ends before") < 5.0


@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_24"])
def test_a_digitally_silent_10_minute_flac_is_not_refused(tmp_path, subtype):
    path = tmp_path / f"silent_{subtype}.flac"
    sf.write(path, np.zeros((N_FRAMES, 2), np.int16), RATE_HZ, subtype=subtype)
    assert N_FRAMES * 2 * 4 / path.stat().st_size > 1000  # float32 bytes per file byte
    data, rate = audio.decode(path)
    assert rate == RATE_HZ and data.shape == (N_FRAMES, 2) and not data.any()


@pytest.mark.slow
def test_an_8_channel_silent_flac_beyond_the_free_budget_streams(tmp_path):
    """921 MB of float32 from a 290 KB file (3,100x; ffmpeg's encoder goes further at high rates):
    past :data:`audio.FREE_DECODE_BYTES` and far past the generic 64x, and still a real recording."""
    path = tmp_path / "silent_8ch.flac"
    with sf.SoundFile(path, "w", 48000, 8, subtype="PCM_24", format="FLAC") as f:
        block = np.zeros((480000, 8), np.int32)
        for _ in range(int(SECONDS * 48000) // len(block)):
            f.write(block)
    decoded = SECONDS * 48000 * 8 * 4
    assert decoded > audio.FREE_DECODE_BYTES and decoded / path.stat().st_size > 2000
    with sf.SoundFile(path) as f:
        assert audio.check_soundfile(f, path) == 48000 and f.tell() == 0
    got = load_item(LoadTask("silent", str(path), 16000, stream_above_samples=16000, scratch_dir=str(tmp_path)))
    assert got.error is None and got.audio_info["streamed"] and got.audio_info["source_channels"] == 8
    assert got.n_samples == int(SECONDS * 16000) and got.var == 0.0


# -- the scripts ---------------------------------------------------------------------------------------

@pytest.mark.slow
def test_the_issue_command_embeds_a_16_bit_flac(tmp_path):
    """``ffmpeg -i data/speech_en_us.wav -sample_fmt s16 x.flac; embed.py x.flac --model ge2e``."""
    need_ffmpeg("the issue's FLAC")
    pytest.importorskip("resemblyzer")
    flac = tmp_path / "x.flac"
    subprocess.run([FFMPEG, "-nostdin", "-v", "error", "-i", str(REPO / "data" / "speech_en_us.wav"), "-sample_fmt",
                    "s16", str(flac)], check=True)
    proc = run_script("embed.py", str(flac), "--model", "ge2e", "--output-dir", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr
    assert np.load(tmp_path / "out" / "x.npy").shape[1] == 256


DONE_WHEN = ["flac16", "flac24", "vorbis", "opus", "mp3", "aac", "wav24", "wavfloat"]


@pytest.mark.slow
def test_a_folder_of_every_format_embeds_as_its_ffmpeg_decoded_wavs(long_files, tmp_path):
    """The issue's "done when": the same 10-minute recording as FLAC 16/24-bit, Ogg Vorbis, Opus, MP3,
    AAC and WAV 24-bit/float runs through embed.py --model birdnet with nothing failed, and each file's
    rows are those of a float WAV that ffmpeg decodes from it (the same window for window)."""
    need_ffmpeg("the reference float WAVs")
    require_birdnet_model()
    folder, refs = tmp_path / "formats", tmp_path / "refs"
    folder.mkdir()
    refs.mkdir()
    ref_of: dict[str, str] = {}
    seen: dict[bytes, str] = {}
    for name in DONE_WHEN:
        src = long_files(name)
        shutil.copyfile(src, folder / src.name)
        ref = refs / f"ref_{name}.wav"
        subprocess.run([FFMPEG, "-nostdin", "-v", "error", "-i", str(src), "-c:a", "pcm_f32le", str(ref)], check=True)
        with sf.SoundFile(ref) as f:
            digest = hashlib.sha256(f.read(dtype="float32").tobytes()).digest()
        if digest in seen:  # the same samples (FLAC 24-bit and WAV 24-bit): embedded once
            ref.unlink()
        ref_of[name] = seen.setdefault(digest, ref.stem)
    rows = {}
    for src_dir, out in ((folder, tmp_path / "out"), (refs, tmp_path / "out_refs")):
        proc = run_script("embed.py", str(src_dir), "--model", "birdnet", "--output-dir", str(out), "--device", "cpu")
        assert proc.returncode == 0, proc.stderr
        summary = json.loads((out / "summary.json").read_text())
        assert summary["files_failed"] == 0 and summary["files_done"] == len(list(src_dir.iterdir()))
        rows.update({p.stem: np.load(p) for p in out.glob("*.npy") if not p.stem.endswith("_label")})
    for name in DONE_WHEN:
        ours, theirs = rows[FORMATS[name].file.rsplit(".", 1)[0]], rows[ref_of[name]]
        assert ours.shape == theirs.shape == (200, 1024), name
        cosine = (ours * theirs).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(theirs, axis=1)
        print(f"{name}: max |rows - ffmpeg WAV's rows| {np.abs(ours - theirs).max():.2e}, "
              f"least cosine {cosine.min():.6f}")
        if FORMATS[name].lossless:
            assert np.abs(ours - theirs).max() <= 1e-3, name
        else:
            assert cosine.min() >= 0.99, (name, cosine.min())

"""Chunk plans tile the whole-file frame grid; the seed's plain concatenation does not."""

import numpy as np
import pytest

from audio_embeddings.framing import (
    conv_frame_count, naive_chunk_frame_count, plan_context_chunks, windows_to_cover,
)

RF, HOP, RATE = 400, 320, 16000


@pytest.mark.parametrize("seconds", [0.025, 1.0, 19.99, 20.0, 20.02, 45.3, 600.0, 3600.0 + 0.013])
@pytest.mark.parametrize("chunk_s,context_s", [(20.0, 2.0), (5.0, 1.0), (3.0, 0.0)])
def test_kept_frames_tile_the_whole_file_grid(seconds, chunk_s, context_s):
    n = int(round(seconds * RATE))
    chunks = plan_context_chunks(n, chunk_samples=int(chunk_s * RATE), context_samples=int(context_s * RATE),
                                 receptive_field_samples=RF, hop_samples=HOP)
    total = conv_frame_count(n, receptive_field_samples=RF, hop_samples=HOP)
    assert total == (n - RF) // HOP + 1
    covered = np.concatenate([np.arange(c.out_start, c.out_start + c.keep_stop - c.keep_start) for c in chunks])
    np.testing.assert_array_equal(covered, np.arange(total))
    assert len({c.n_samples for c in chunks}) == 1, "chunks must batch without padding"
    for c in chunks:
        assert c.start_sample % HOP == 0 and 0 <= c.start_sample and c.start_sample + c.n_samples <= n
        assert c.n_samples <= max(int(chunk_s * RATE), 0) or len(chunks) == 1
        # a kept frame k of the chunk is whole-file frame start/HOP + k
        assert c.start_sample // HOP + c.keep_start == c.out_start
        if len(chunks) > 1 and c is not chunks[0]:
            assert c.keep_start >= int(np.ceil(context_s * RATE / HOP)), "left context dropped"
        if len(chunks) > 1 and c is not chunks[-1]:
            frames_in_chunk = conv_frame_count(c.n_samples, receptive_field_samples=RF, hop_samples=HOP)
            assert frames_in_chunk - c.keep_stop >= int(np.ceil(context_s * RATE / HOP)), "right context dropped"


def test_file_that_fits_is_one_chunk_of_the_whole_file():
    n = 20 * RATE
    (chunk,) = plan_context_chunks(n, chunk_samples=n, context_samples=2 * RATE, receptive_field_samples=RF,
                                   hop_samples=HOP)
    assert (chunk.start_sample, chunk.n_samples, chunk.keep_start, chunk.out_start) == (0, n, 0, 0)
    assert chunk.keep_stop == 999


def test_seed_concatenation_loses_a_frame_per_boundary_and_drifts():
    n = 600 * RATE  # 10 minutes, 20 s chunks: 30 chunks of 999 frames
    naive = naive_chunk_frame_count(n, chunk_samples=20 * RATE, receptive_field_samples=RF, hop_samples=HOP)
    whole = conv_frame_count(n, receptive_field_samples=RF, hop_samples=HOP)
    assert whole - naive == 29
    # the seed's time axis k * 20 ms ends 29 frames (0.58 s) short of the audio it covers
    assert (whole - naive) * HOP / RATE == pytest.approx(0.58)


def test_context_larger_than_chunk_is_refused():
    with pytest.raises(ValueError, match="too short"):
        plan_context_chunks(100 * RATE, chunk_samples=RATE, context_samples=RATE, receptive_field_samples=RF,
                            hop_samples=HOP)




def test_windows_to_cover_reach_the_end_with_the_fewest_windows():
    assert windows_to_cover(10, window_samples=5, hop_samples=5).tolist() == [0, 5]
    assert windows_to_cover(11, window_samples=5, hop_samples=5).tolist() == [0, 5, 10]
    assert windows_to_cover(3, window_samples=5, hop_samples=5).tolist() == [0]
    assert windows_to_cover(12, window_samples=5, hop_samples=2).tolist() == [0, 2, 4, 6, 8]

function test_B1_model_perch(modelDir, outDir, resultFile, audioFile)
%TEST_B1_MODEL_PERCH Octave/MATLAB test of matlab/B1_model_perch.m with a tiny Perch SavedModel.
%   TEST_B1_MODEL_PERCH(MODELDIR, OUTDIR, RESULTFILE, AUDIOFILE)
%     MODELDIR    tiny Perch SavedModel folder (tests/tiny_perch.py savedmodel DIR)
%     OUTDIR      where the wrapper writes its outputs
%     RESULTFILE  .mat the results are saved to for tests/test_matlab.py
%     AUDIOFILE   an audio file (tests/test_matlab.py passes a 12.5 s clip)
%   Errors (non-zero exit status of octave-cli) on the first failed check.
[emb, info] = B1_model_perch(audioFile, 'Model', modelDir, 'OutputDir', outDir, 'Device', 'cpu', 'TopK', 2);
assert(isa(emb, 'single'), 'emb is %s, expected single', class(emb));
assert(isequal(size(emb), [3 1536]), 'size(emb) = %s, expected [3 1536]', mat2str(size(emb)));
assert(isequal(info.time_axis(:)', [0 5 10]), 'time_axis = %s', mat2str(info.time_axis));
assert(info.sample_rate == 32000 && info.window_s == 5 && info.hop_s == 5, 'geometry is wrong');
assert(numel(info.frag_files) == 3, 'expected 3 fragment files');
for k = 1:3
    row = dlmread(info.frag_files{k}, ',');
    assert(isequal(size(row), [1 1536]), 'fragment %d has size %s', k, mat2str(size(row)));
    assert(max(abs(single(row) - emb(k, :))) == 0, 'fragment %d differs from row %d of emb', k, k);
end
meta = jsondecode(fileread(info.json_file));
assert(isequal(meta.chunking.padded_windows(:)', 2), 'padded_windows = %s', mat2str(meta.chunking.padded_windows));

[emb10, info10] = B1_model_perch(audioFile, 'Model', modelDir, 'OutputDir', outDir, 'Device', 'cpu', ...
                                 'Basename', 'ten', 'Force10sec', true);
assert(isequal(size(emb10), [2 1536]) && info10.sample_rate == 16000 && info10.window_s == 10, ...
       'Force10sec did not give 10 s windows at 16 kHz');
save('-v7', resultFile, 'emb', 'emb10');
end

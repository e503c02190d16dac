function test_B3_model_metis(stackDir, outDir, resultFile, audioFile)
%TEST_B3_MODEL_METIS Octave/MATLAB test of matlab/B3_model_metis.m with a tiny Metis stack.
%   TEST_B3_MODEL_METIS(STACKDIR, OUTDIR, RESULTFILE, AUDIOFILE)
%     STACKDIR    folder made by tests/tiny_metis.py (w2v-bert/, codec.safetensors, stats.pt)
%     OUTDIR      where the wrapper writes its outputs
%     RESULTFILE  .mat the results are saved to for tests/test_matlab.py
%     AUDIOFILE   any audio file
%   Errors (non-zero exit status of octave-cli) on the first failed check.
common = {'Model', fullfile(stackDir, 'w2v-bert'), 'Codec', fullfile(stackDir, 'codec.safetensors'), ...
          'Stats', fullfile(stackDir, 'stats.pt'), 'OutputDir', outDir, 'Device', 'cpu'};

[emb, info] = B3_model_metis(audioFile, common{:}, 'Codes', true, 'Basename', 'metis_latents');
meta = jsondecode(fileread(info.json_file));
n16k = double(meta.num_samples);
T = floor((n16k - 400) / 320) + 1;               % ceil(fbank frames / 2)
assert(isa(emb, 'single'), 'emb is %s, expected single', class(emb));
assert(isequal(size(emb), [T 8]), 'size(emb) = %s, expected [%d 8]', mat2str(size(emb)), T);
assert(all(isfinite(emb(:))), 'emb has non-finite values');
assert(isequal(size(info.time_axis), [T 1]), 'size(time_axis) = %s', mat2str(size(info.time_axis)));
assert(max(abs(diff(info.time_axis) - 0.02)) < 1e-9, 'time_axis step is not 0.02 s');
assert(info.sample_rate == 16000, 'sample_rate = %g', info.sample_rate);
assert(info.layer == 17, 'layer = %g', info.layer);
assert(numel(info.codes) == T, 'numel(codes) = %d', numel(info.codes));
assert(exist(info.corpus_json_file, 'file') == 2, 'corpus JSON missing');
corpus = jsondecode(fileread(info.corpus_json_file));
keys = fieldnames(corpus);
assert(numel(keys) == 1, 'corpus JSON has %d entries', numel(keys));
fromJson = single(corpus.(keys{1}));
assert(isequal(size(fromJson), [T 8]) && max(abs(fromJson(:) - emb(:))) < 1e-6, 'corpus JSON differs from emb');

% without 'Basename' the outputs are named as Python names them: after the audio file
[emb5, info5] = B3_model_metis(audioFile, common{:}, 'Layer', 5);
[~, stem] = fileparts(audioFile);
assert(strcmp(info5.npy_file, fullfile(outDir, [stem '.npy'])), 'default base name: npy_file = %s', info5.npy_file);
assert(info5.layer == 5 && isequal(size(emb5), [T 8]), 'Layer 5 run');
assert(max(abs(emb5(:) - emb(:))) > 1e-3, 'Layer 5 gives the same latents as layer 17');

time_axis = info.time_axis; codes = double(info.codes(:)); npy_file = info.npy_file;
save(resultFile, '-v7', 'emb', 'time_axis', 'codes', 'npy_file', 'emb5');
fprintf('test_B3_model_metis: ok (T = %d)\n', T);
end

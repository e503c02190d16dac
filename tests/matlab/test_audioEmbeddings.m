function test_audioEmbeddings(modelDir, resultFile, audioFile)
%TEST_AUDIOEMBEDDINGS Octave/MATLAB test of matlab/audioEmbeddings.m on in-memory speech.
%   TEST_AUDIOEMBEDDINGS(MODELDIR, RESULTFILE, AUDIOFILE)
%     MODELDIR    tiny wav2vec2 model folder; default $AE_TEST_MODEL_DIR
%     RESULTFILE  .mat the results are saved to for tests/test_matlab.py; default
%                 $AE_TEST_OUTPUT_DIR/octave_ae_results.mat
%     AUDIOFILE   default <repo>/data/speech_en_us.wav
%   Runs GE2E (real weights, shipped with resemblyzer) on the clip as double and the tiny
%   wav2vec2 model on it as single. Errors on the first failed check.
repo = fileparts(fileparts(fileparts(mfilename('fullpath'))));
if nargin < 1 || isempty(modelDir), modelDir = getenv('AE_TEST_MODEL_DIR'); end
assert(~isempty(modelDir), 'pass MODELDIR (or set AE_TEST_MODEL_DIR)');
if nargin < 2 || isempty(resultFile)
    outDir = getenv('AE_TEST_OUTPUT_DIR');
    assert(~isempty(outDir), 'pass RESULTFILE (or set AE_TEST_OUTPUT_DIR)');
    resultFile = fullfile(outDir, 'octave_ae_results.mat');
end
if nargin < 3 || isempty(audioFile), audioFile = fullfile(repo, 'data', 'speech_en_us.wav'); end

[x, fs] = audioread(audioFile);
assert(isa(x, 'double') && size(x, 2) == 1, 'expected a mono clip read as double');
n = size(x, 1);

% --- GE2E, default model ---------------------------------------------------------------------
[embG, tG, infoG] = audioEmbeddings(x, fs);
assert(isa(embG, 'single'), 'GE2E emb is %s', class(embG));
assert(ndims(embG) == 2 && size(embG, 2) == 256 && size(embG, 1) >= 1, 'GE2E size(emb) = %s', mat2str(size(embG)));
assert(isa(tG, 'double') && isequal(size(tG), [size(embG, 1) 1]), 'GE2E size(t) = %s', mat2str(size(tG)));
assert(tG(1) == 0 && all(diff(tG) > 0), 'GE2E t is not increasing from 0');
assert(tG(end) < n / fs, 'GE2E t(end) = %g beyond the clip (%g s)', tG(end), n / fs);
assert(strcmp(infoG.model_name, 'ge2e'), 'GE2E model_name = %s', infoG.model_name);
assert(isfield(infoG, 'utterance_embedding') && numel(infoG.utterance_embedding) == 256, 'no utterance_embedding');
rowNorms = sqrt(sum(double(embG) .^ 2, 2));
assert(all(abs(rowNorms - 1) < 1e-3), 'GE2E frame embeddings are not unit vectors');

% --- tiny wav2vec2, single-precision input ---------------------------------------------------
[embW, tW, infoW] = audioEmbeddings(single(x), fs, 'Model', modelDir, 'Device', 'cpu');
n16k = n * 16000 / fs;
T = floor((n16k - 400) / 320) + 1;
assert(isa(embW, 'single'), 'wav2vec2 emb is %s', class(embW));
assert(ndims(embW) == 2 && size(embW, 2) == 32, 'wav2vec2 size(emb) = %s', mat2str(size(embW)));
assert(abs(size(embW, 1) - T) <= 1, 'wav2vec2 T = %d, expected about %g', size(embW, 1), T);
assert(isa(tW, 'double') && isequal(size(tW), [size(embW, 1) 1]), 'wav2vec2 size(t) = %s', mat2str(size(tW)));
assert(tW(1) == 0 && max(abs(diff(tW) - 0.02)) < 1e-9, 'wav2vec2 t step is not 0.02 s');
assert(infoW.sample_rate == 16000, 'wav2vec2 sample_rate = %g', infoW.sample_rate);

% --- results for the pytest side -------------------------------------------------------------
emb_ge2e = embG; t_ge2e = tG; utt_ge2e = infoG.utterance_embedding;
emb_w2v = embW; t_w2v = tW; num_samples = n; fs_in = fs;
save(resultFile, '-v7', 'emb_ge2e', 't_ge2e', 'utt_ge2e', 'emb_w2v', 't_w2v', 'num_samples', 'fs_in');
fprintf('test_audioEmbeddings: ok (GE2E %d frames, wav2vec2 %d frames)\n', size(embG, 1), size(embW, 1));
end

function test_B2_model_wav2vec2(modelDir, outDir, resultFile, audioFile)
%TEST_B2_MODEL_WAV2VEC2 Octave/MATLAB test of matlab/B2_model_wav2vec2.m with a tiny local model.
%   TEST_B2_MODEL_WAV2VEC2(MODELDIR, OUTDIR, RESULTFILE, AUDIOFILE)
%     MODELDIR    tiny wav2vec2 model folder (tests/tiny_models.py wav2vec2 DIR); default
%                 $AE_TEST_MODEL_DIR
%     OUTDIR      where the wrapper writes its outputs; default $AE_TEST_OUTPUT_DIR
%     RESULTFILE  .mat the results are saved to for tests/test_matlab.py; default
%                 OUTDIR/octave_b2_results.mat
%     AUDIOFILE   default <repo>/data/speech_en_us.wav
%   Errors (non-zero exit status of octave-cli) on the first failed check.
%   Needs matlab/ on the path; the interpreter comes from $AUDIO_EMBEDDINGS_PYTHON or <repo>/.venv.
repo = fileparts(fileparts(fileparts(mfilename('fullpath'))));
if nargin < 1 || isempty(modelDir), modelDir = getenv('AE_TEST_MODEL_DIR'); end
if nargin < 2 || isempty(outDir), outDir = getenv('AE_TEST_OUTPUT_DIR'); end
assert(~isempty(modelDir) && ~isempty(outDir), 'pass MODELDIR and OUTDIR (or set AE_TEST_MODEL_DIR, AE_TEST_OUTPUT_DIR)');
if nargin < 3 || isempty(resultFile), resultFile = fullfile(outDir, 'octave_b2_results.mat'); end
if nargin < 4 || isempty(audioFile), audioFile = fullfile(repo, 'data', 'speech_en_us.wav'); end
hidden = 32;         % tiny model: hidden size 32, 3 transformer layers
nLayers = 3;

% --- default layer (last) -------------------------------------------------------------------
[emb, info] = B2_model_wav2vec2(audioFile, 'Model', modelDir, 'OutputDir', outDir, ...
                                'Basename', 'b2_last', 'Device', 'cpu');
meta = jsondecode(fileread(info.json_file));
n16k = double(meta.num_samples);                 % clip length after resampling to 16 kHz
T = floor((n16k - 400) / 320) + 1;               % 400-sample receptive field, 320-sample hop
assert(isa(emb, 'single'), 'emb is %s, expected single', class(emb));
assert(isequal(size(emb), [T hidden]), 'size(emb) = %s, expected [%d %d]', mat2str(size(emb)), T, hidden);
assert(all(isfinite(emb(:))), 'emb has non-finite values');
assert(isequal(size(info.time_axis), [T 1]), 'size(time_axis) = %s', mat2str(size(info.time_axis)));
assert(isa(info.time_axis, 'double'), 'time_axis is %s', class(info.time_axis));
assert(info.time_axis(1) == 0, 'time_axis(1) = %g', info.time_axis(1));
assert(max(abs(diff(info.time_axis) - 0.02)) < 1e-9, 'time_axis step is not 0.02 s');
assert(abs(info.frame_stride - 0.02) < 1e-12, 'frame_stride = %g', info.frame_stride);
assert(info.sample_rate == 16000, 'sample_rate = %g', info.sample_rate);
assert(abs(info.window_s - 0.025) < 1e-12, 'window_s = %g', info.window_s);
assert(ischar(info.model_name) && ~isempty(info.model_name), 'model_name missing');
assert(isfield(info, 'layers'), 'info.layers missing');
assert(~isfield(info, 'embeddings'), 'info should not repeat the embeddings');
names = {'npy_file', 'mat_file', 'json_file'};
for k = 1:numel(names)
    f = info.(names{k});
    assert(exist(f, 'file') == 2, '%s %s does not exist', names{k}, f);
end
assert(strcmp(info.mat_file, fullfile(outDir, 'b2_last.mat')), 'mat_file = %s', info.mat_file);

% --- all layers: hidden states 0..3 -> [4 x T x 32] ----------------------------------------
[embAll, infoAll] = B2_model_wav2vec2(audioFile, 'Model', modelDir, 'OutputDir', outDir, ...
                                      'Basename', 'b2_all', 'Layers', 'all', 'Device', 'cpu');
assert(isa(embAll, 'single'), 'embAll is %s', class(embAll));
assert(isequal(size(embAll), [nLayers + 1, T, hidden]), 'size(embAll) = %s, expected [%d %d %d]', ...
       mat2str(size(embAll)), nLayers + 1, T, hidden);
assert(isequal(double(infoAll.layers(:)'), 0:nLayers), 'layers = %s', mat2str(infoAll.layers));
lastOfAll = reshape(embAll(end, :, :), T, hidden);
assert(max(abs(lastOfAll(:) - emb(:))) < 1e-4, 'last of ''all'' differs from ''last''');

% --- numeric layer list [1 3] -> '1,3', with chunking ----------------------------------------
[embSel, infoSel] = B2_model_wav2vec2(audioFile, 'Model', modelDir, 'OutputDir', outDir, ...
                                      'Basename', 'b2_sel', 'Layers', [1 3], 'ChunkSeconds', 3, ...
                                      'ContextSeconds', 1, 'MatVersion', 5, 'Device', 'cpu');
assert(isequal(size(embSel), [2, T, hidden]), 'size(embSel) = %s', mat2str(size(embSel)));
assert(isequal(double(infoSel.layers(:)'), [1 3]), 'layers = %s', mat2str(infoSel.layers));
assert(isequal(infoSel.time_axis, info.time_axis), 'chunked time axis differs');

% --- results for the pytest side -------------------------------------------------------------
time_axis = info.time_axis; frame_stride = info.frame_stride; sample_rate = info.sample_rate;
model_name = info.model_name; npy_file = info.npy_file; layers_all = double(infoAll.layers);
layers_sel = double(infoSel.layers); emb_all = embAll; emb_sel = embSel; n16k_json = n16k;
save(resultFile, '-v7', 'emb', 'time_axis', 'frame_stride', 'sample_rate', 'model_name', 'npy_file', ...
     'emb_all', 'layers_all', 'emb_sel', 'layers_sel', 'n16k_json');
fprintf('test_B2_model_wav2vec2: ok (T = %d)\n', T);
end

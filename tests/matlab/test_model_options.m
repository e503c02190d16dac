function test_model_options(whisperDir, w2vDir, resultFile, audioFile)
%TEST_MODEL_OPTIONS Options declared only in Python reach the MATLAB wrappers (no .m file names them).
%   TEST_MODEL_OPTIONS(WHISPERDIR, W2VDIR, RESULTFILE, AUDIOFILE)
%     WHISPERDIR  tiny Whisper model folder (recognised by its config.json)
%     W2VDIR      tiny wav2vec2 model folder
%     RESULTFILE  .mat the results are saved to for tests/test_matlab.py
%     AUDIOFILE   a speech clip
%   Needs AUDIO_EMBEDDINGS_PLUGINS=stub_plugin (tests/stub_plugin.py on PYTHONPATH): its option
%   'StubGain' is declared in that Python module only. Also checks the alignment options ('TR',
%   'HRF', 'Delays') and the model option 'Layers' on B2, and a Whisper folder in audioEmbeddings.
[x, fs] = audioread(audioFile);
x = x(:, 1);

% --- a Whisper encoder folder --------------------------------------------------------------------
[embWh, tWh, infoWh] = audioEmbeddings(x, fs, 'Model', whisperDir, 'Device', 'cpu');
n16k = round(numel(x) * 16000 / fs);
assert(size(embWh, 1) == floor(n16k / 320), 'Whisper rows %d, expected %d', size(embWh, 1), floor(n16k / 320));
assert(all(abs(diff(tWh) - 0.02) < 1e-9), 'Whisper time axis is not 20 ms');

% --- a plugin backend's option, declared only in Python ------------------------------------------
x8 = sin(2 * pi * 220 * (0:7999)' / 8000) * 0.5;
stub1 = audioEmbeddings(x8, 8000, 'Model', 'stub-gain');
stub3 = audioEmbeddings(x8, 8000, 'Model', 'stub-gain', 'StubGain', 3);
assert(max(abs(stub3(:) - 3 * stub1(:))) < 1e-5 * max(abs(stub3(:))), 'StubGain did not reach the model');
msg = '';
try
    audioEmbeddings(x8, 8000, 'Model', 'stub-gain', 'StubGain', -1);
catch err
    msg = err.message;
end
assert(~isempty(strfind(msg, '''StubGain'' must be a number > 0')), 'bad StubGain message: %s', msg);

% --- alignment to an fMRI grid, and a model option, on B2 ----------------------------------------
outDir = fullfile(fileparts(resultFile), 'b2 aligned');
[embA, infoA] = B2_model_wav2vec2(audioFile, 'Model', w2vDir, 'OutputDir', outDir, 'Basename', 'aligned', ...
                                  'TR', 2, 'HRF', 'spm', 'Delays', 1:4, 'Layers', 'last', 'Device', 'cpu', ...
                                  'Plot', true);
assert(exist(fullfile(outDir, 'aligned.png'), 'file') == 2, '''Plot'', true wrote no picture');
D = size(embA, 2);
dur = numel(x) / fs;
assert(isequal(size(infoA.embeddings_aligned), [ceil(dur / 2), 4 * D]), 'size(embeddings_aligned) = %s', ...
       mat2str(size(infoA.embeddings_aligned)));
assert(max(abs(infoA.time_axis_aligned(:)' - (0:2:2 * (ceil(dur / 2) - 1)))) == 0, 'time_axis_aligned is not 0:2:...');
assert(infoA.target_rate == 0.5 && strcmp(infoA.hrf, 'spm'), 'alignment settings not in info');

emb_whisper = embWh; stub_1 = stub1; stub_3 = stub3; emb_aligned = infoA.embeddings_aligned; %#ok<NASGU>
save(resultFile, '-v7', 'emb_whisper', 'stub_1', 'stub_3', 'emb_aligned');
fprintf('test_model_options: ok\n');
end

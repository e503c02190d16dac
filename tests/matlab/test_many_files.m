function test_many_files(w2vDir, workDir, resultFile)
%TEST_MANY_FILES The wrappers over many files, partial results, usage and the user's own names in errors.
%   TEST_MANY_FILES(W2VDIR, WORKDIR, RESULTFILE)
%     W2VDIR      tiny wav2vec2 model folder
%     WORKDIR     holds clips/ (a.wav, b.wav), corpus/ (three good clips and an empty one) and
%                 speakers/ (dataset/speaker/utt.wav, one of them empty), written by the caller
%     RESULTFILE  .mat the results are saved to for tests/test_matlab.py
clips = {fullfile(workDir, 'clips', 'a.wav'), fullfile(workDir, 'clips', 'b.wav')};

% --- a list of files: two results from one Python call ------------------------------------------
setenv('AE_TEST_CALL_LOG', fullfile(workDir, 'calls_list.log'));
[embs, info] = B2_model_wav2vec2(clips, 'Model', w2vDir, 'OutputDir', fullfile(workDir, 'out list'), 'Device', 'cpu');
assert(iscell(embs) && numel(embs) == 2, 'expected two results');
assert(isequal(info.files(:)', clips), 'info.files is not the inputs in order');
for k = 1:2
    [x, fs] = audioread(clips{k});
    T = floor((round(numel(x) * 16000 / fs) - 400) / 320) + 1;
    assert(isequal(size(embs{k}), [T 32]), 'file %d: size %s, expected [%d 32]', k, mat2str(size(embs{k})), T);
    assert(numel(info.results{k}.time_axis) == T, 'file %d: time axis', k);
end
assert(isempty(info.failures), 'no failures expected');

% --- a folder with a bad file: the rest, and a warning naming it ---------------------------------
setenv('AE_TEST_CALL_LOG', fullfile(workDir, 'calls_folder.log'));
lastwarn('');
[embsF, infoF] = B2_model_wav2vec2(fullfile(workDir, 'corpus'), 'Model', w2vDir, ...
                                   'OutputDir', fullfile(workDir, 'out folder'), 'Device', 'cpu');
setenv('AE_TEST_CALL_LOG', fullfile(workDir, 'calls_other.log'));
[msg, id] = lastwarn();
assert(strcmp(id, 'audioEmbeddings:failedFiles'), 'warning id %s', id);
assert(~isempty(strfind(msg, 'empty.wav')), 'the warning does not name the bad file: %s', msg);
assert(numel(embsF) == 4 && numel(infoF.failures) == 1, 'folder: %d results, %d failures', numel(embsF), numel(infoF.failures));
bad = find(cellfun(@isempty, embsF));
assert(numel(bad) == 1 && ~isempty(strfind(infoF.files{bad}, 'empty.wav')), 'the empty result is not the bad file');
folder_failure = infoF.failures(1).reason;

% --- B4 on a tree with a bad utterance ------------------------------------------------------------
lastwarn('');
[U, infoS] = B4_model_speaker(fullfile(workDir, 'speakers'), 'Model', 'ge2e', ...
                              'OutputDir', fullfile(workDir, 'out speakers'), 'Device', 'cpu');
[msg, id] = lastwarn();
assert(strcmp(id, 'audioEmbeddings:failedFiles') && ~isempty(strfind(msg, 'bad.wav')), 'B4 warning: %s', msg);
assert(size(U, 1) == 3 && size(U, 2) == 256, 'B4: size(U) = %s', mat2str(size(U)));
assert(numel(infoS.failures) == 1, 'B4: %d failures', numel(infoS.failures));

% --- usage without arguments ----------------------------------------------------------------------
usage = evalc('B1_model_perch()');
assert(~isempty(strfind(usage, 'Usage: [emb, info] = B1_model_perch(')), 'no usage line: %s', usage);

% --- errors name the caller's variable and MATLAB options ------------------------------------------
msg = '';
try
    audioEmbeddings(zeros(100, 1), 16000, 'Model', w2vDir, 'Device', 'cpu');
catch err
    msg = err.message;
end
assert(~isempty(strfind(msg, 'audioIn: too short')), 'no audioIn in: %s', msg);
assert(isempty(strfind(msg, 'audio.mat')) && isempty(strfind(msg, tempdir())), 'a temporary path in: %s', msg);
msg = '';
try
    audioEmbeddings(zeros(16000, 1), 16000, 'Model', 'ge2e', 'Layers', 'all');
catch err
    msg = err.message;
end
assert(~isempty(strfind(msg, 'does not take ''Layers''')) && isempty(strfind(msg, '--layers')), 'flag in: %s', msg);

% --- a window model's hop and class names ---------------------------------------------------------
[xb, fsb] = audioread(clips{1});
[embB, tB, infoB] = audioEmbeddings([xb; xb; xb], fsb, 'Model', 'birdnet', 'HopSeconds', 1.5, 'TopK', 2, ...
                                    'MinSeconds', 0);
assert(all(abs(diff(tB) - 1.5) < 1e-9), 'HopSeconds did not reach BirdNET');
assert(iscell(infoB.classes) && numel(infoB.classes) == 6522, 'info.classes is not the 6522 BirdNET labels');
assert(size(infoB.label, 1) == size(embB, 1), 'TopK implies the logits per window');

n_list = numel(embs); n_folder = numel(embsF); %#ok<NASGU>
save(resultFile, '-v7', 'n_list', 'n_folder', 'folder_failure');
fprintf('test_many_files: ok\n');
end

function test_matlab_errors(modelDir, resultFile)
%TEST_MATLAB_ERRORS Failures are reported as errors, with Python's own message when Python fails.
%   TEST_MATLAB_ERRORS(MODELDIR, RESULTFILE)
%     MODELDIR    tiny wav2vec2 model folder; default $AE_TEST_MODEL_DIR
%     RESULTFILE  .mat the caught messages are saved to; default
%                 $AE_TEST_OUTPUT_DIR/octave_error_results.mat
%   Python-side failures must raise audioEmbeddings:python with Python's "error: ..." line;
%   bad MATLAB inputs must fail before Python runs, with their own identifiers.
if nargin < 1 || isempty(modelDir), modelDir = getenv('AE_TEST_MODEL_DIR'); end
assert(~isempty(modelDir), 'pass MODELDIR (or set AE_TEST_MODEL_DIR)');
if nargin < 2 || isempty(resultFile)
    outDir = getenv('AE_TEST_OUTPUT_DIR');
    assert(~isempty(outDir), 'pass RESULTFILE (or set AE_TEST_OUTPUT_DIR)');
    resultFile = fullfile(outDir, 'octave_error_results.mat');
end
outDir = fileparts(resultFile);

% --- Python failures -------------------------------------------------------------------------
missing = fullfile(outDir, 'no such clip.wav');
err = caught(@() B2_model_wav2vec2(missing, 'Model', modelDir, 'OutputDir', outDir, 'Basename', 'never'));
assert(strcmp(err.identifier, 'audioEmbeddings:python'), 'missing file: identifier %s', err.identifier);
assert(~isempty(strfind(err.message, 'error: ')), 'missing file: no "error:" line in: %s', err.message);
assert(~isempty(strfind(err.message, 'file not found')), 'missing file: message is: %s', err.message);
assert(~isempty(strfind(err.message, missing)), 'missing file: path not in: %s', err.message);
msg_missing_file = err.message;
missing_file = missing;

badModel = 'no-such-model-preset';
err = caught(@() audioEmbeddings(zeros(16000, 1), 16000, 'Model', badModel));
assert(strcmp(err.identifier, 'audioEmbeddings:python'), 'bad model: identifier %s', err.identifier);
assert(~isempty(strfind(err.message, ['unknown model ''' badModel ''''])), 'bad model: message is: %s', err.message);
msg_bad_model = err.message;

% --- MATLAB-side validation (no Python run) --------------------------------------------------
expectId(@() audioEmbeddings('not audio', 16000), 'audioEmbeddings:invalidAudio');
expectId(@() audioEmbeddings([], 16000), 'audioEmbeddings:invalidAudio');
expectId(@() audioEmbeddings({1, 2}, 16000), 'audioEmbeddings:invalidAudio');
expectId(@() audioEmbeddings([0; NaN; 0], 16000), 'audioEmbeddings:invalidAudio');
expectId(@() audioEmbeddings(zeros(2, 1000), 16000), 'audioEmbeddings:invalidAudio');
expectId(@() audioEmbeddings(complex(zeros(100, 1), 1), 16000), 'audioEmbeddings:invalidAudio');
expectId(@() audioEmbeddings(zeros(100, 1), 0), 'audioEmbeddings:invalidFs');
expectId(@() audioEmbeddings(zeros(100, 1), NaN), 'audioEmbeddings:invalidFs');
expectId(@() audioEmbeddings(zeros(100, 1), [8000 16000]), 'audioEmbeddings:invalidFs');
expectId(@() audioEmbeddings(zeros(100, 1), 16000.5), 'audioEmbeddings:invalidFs');
expectId(@() audioEmbeddings(zeros(100, 1), '16000'), 'audioEmbeddings:invalidFs');
expectId(@() audioEmbeddings(zeros(100, 2), 16000, 'Channel', 2), 'audioEmbeddings:invalidOption');
expectId(@() audioEmbeddings(zeros(100, 1), 16000, 'Python', fullfile(outDir, 'no-python')), 'audioEmbeddings:noPython');
expectMessage(@() audioEmbeddings(zeros(100, 1), 16000, 'ChunkSeconds', -1), '''ChunkSeconds'' must be');
expectMessage(@() B2_model_wav2vec2('x.wav', 'Layers', 'first'), '''Layers'' must be');
expectMessage(@() B2_model_wav2vec2('x.wav', 'Dtype', 'float64'), '''Dtype'' must be');

save(resultFile, '-v7', 'msg_missing_file', 'missing_file', 'msg_bad_model', 'badModel');
fprintf('test_matlab_errors: ok\n');
end

function err = caught(fn)
err = [];
try
    fn();
catch e
    err = e;
end
assert(~isempty(err), 'expected an error, got none');
end

function expectId(fn, id)
err = caught(fn);
assert(strcmp(err.identifier, id), 'expected %s, got %s: %s', id, err.identifier, err.message);
end

function expectMessage(fn, text)
err = caught(fn);
assert(~isempty(strfind(err.message, text)), 'expected a message with "%s", got: %s', text, err.message);
end

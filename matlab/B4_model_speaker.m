function [emb, info] = B4_model_speaker(input, varargin)
%B4_MODEL_SPEAKER Speaker embeddings of a file or a data_root tree (runs python/B4_model_speaker.py).
%   [EMB, INFO] = B4_MODEL_SPEAKER(INPUT) embeds INPUT -- an audio file, or a folder laid out as
%   data_root/dataset/speaker/utterance.wav -- with 3D-Speaker's ERes2NetV2 and returns
%     EMB   single, U-by-D utterance embeddings (1-by-D for a single file)
%     INFO  struct: utterance_ids, utterance_speakers, utterance_paths (U-by-1 cell),
%           speaker_embeddings (S-by-D single, mean of each speaker's utterances), speaker_ids,
%           num_utterances (S-by-1), embedding_dimension, model_name, and final_dir, the folder
%           holding the pickles, lists, summary.json, .npy and embeddings.mat.
%   The final files cover every utterance embedded into OutputDir so far (runs resume there).
%
%   Name-value options (passed to Python only when given; the Python defaults apply otherwise):
%     'Model'       'eres2netv2' | 'eres2netv2_w24s4ep4' | 'campplus' | 'ge2e' (offline) ('eres2netv2')
%     'Checkpoint'  weights file or ModelScope id                    (the published checkpoint)
%     'OutputDir'   folder for the outputs                           (<repo>/Models/speaker)
%     'Device'      'auto' | 'cpu' | 'cuda' | 'mps'                  ('auto')
%     'Dtype'       'float32' | 'float16' | 'bfloat16'               ('float32')
%     'Channel'     0-based channel to keep instead of the average of all channels
%     'Vad'         'none' | 'silero'                                 ('none')
%                   voice-activity detection: utterances are trimmed to their speech; recordings
%                   longer than 'MaxSegmentS' are cut into speech segments, one row each
%     'MinSpeechS', 'MergeGapS', 'MaxSegmentS'   the VAD's bounds in seconds (0.25, 0.3, 30)
%     'AllowPipes'  true: run the commands of a Kaldi wav.scp ('... |'; they run programs)  (false)
%     'Formats'     'ark' also writes Kaldi embeddings.ark/.scp and spk_embeddings.ark/.scp in
%                   INFO.final_dir (comma-separated with the per-utterance formats: 'npy,ark')
%     'Python'      Python interpreter (else $AUDIO_EMBEDDINGS_PYTHON, else <repo>/.venv)
%
%   INPUT may also be a Kaldi data directory (wav.scp, with utt2spk, segments when present): the
%   rows are then its utterances (or segments), INFO.utterance_ids their Kaldi ids. Trial scoring
%   and two-recording comparison: B4_score_trials.
%
%   Files that fail (empty, corrupt, too short) do not stop the run: the others are returned,
%   a warning ('audioEmbeddings:failedFiles') lists them and INFO.failures holds them (file, reason).
%
%   A failed Python run raises error('audioEmbeddings:python', ...) with Python's message.
%
%   Example:
%     [U, info] = B4_model_speaker('data_root', 'Model', 'campplus', 'Checkpoint', 'campplus_cn_common.bin');
%     S = info.speaker_embeddings ./ vecnorm(info.speaker_embeddings, 2, 2);
%     imagesc(S * S')      % speaker-to-speaker cosine similarity
%
%   See also B4_score_trials, audioEmbeddings.

if nargin < 1   % no input: the usage line, not an error about an undefined variable
    fprintf('%s\n', 'Usage: [emb, info] = B4_model_speaker(audioFile | data_root, ''Name'', value, ...); help B4_model_speaker lists the options.');
    emb = [];
    info = struct();
    return
end
p = inputParser;
p.KeepUnmatched = true;   % the model's own options: checked by Python (ae_cli_args)
p.FunctionName = 'B4_model_speaker';
p.addRequired('input', @(v) ae_check_option('AudioFile', v));
ae_add_options(p, {'Model', 'OutputDir', 'Device', 'Dtype', 'Channel', 'Overwrite', ...   % not given: Python's defaults
                  'Formats', 'Vad', 'MinSpeechS', 'MergeGapS', 'MaxSegmentS', 'AllowPipes'});   % B4's own (SpeakerHooks.options)
p.addParameter('Python', '', @(v) ae_check_option('Python', v));
p.parse(input, varargin{:});
opts = p.Results;
given = setdiff(fieldnames(opts), p.UsingDefaults);

py = ae_python(opts.Python);
index = [tempname() '_results.mat'];
cleaner = onCleanup(@() ae_delete_if_there(index)); %#ok<NASGU>
args = [{ae_abspath(ae_text(opts.input)), '--matlab-results', index}, ae_cli_args(opts, given, p.Unmatched)];
ae_run_script(py, 'B4_model_speaker.py', args, true);   % failed files: the rest is returned, with a warning
written = ae_results_index(index);

finalDir = written.final_dir;   % Python's: OutputDir/final_embeddings
matFile = fullfile(finalDir, 'embeddings.mat');
if isempty(finalDir) || exist(matFile, 'file') ~= 2
    error('audioEmbeddings:output', 'The Python run reported success but %s was not written.', matFile);
end
info = load(matFile);
emb = single(info.utterance_embeddings);
info = rmfield(info, 'utterance_embeddings');
info.speaker_embeddings = single(info.speaker_embeddings);
info.model_name = char(info.model_name);
info.final_dir = finalDir;
info.failures = written.failures;
ae_warn_failures(written.failures, numel(written.files));
end
